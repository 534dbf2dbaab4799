"""Deployment settings and secrets, from the environment or a ``.env`` file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_POLICY = PROJECT_ROOT / "policy.example.toml"


class Settings(BaseSettings):
    """Every name here is documented in ``bot.example.env``."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    data_dir: Path = Field(Path("data"), alias="FUSIONBOT_DATA_DIR")
    database_url: str | None = Field(None, alias="FUSIONBOT_DATABASE_URL")
    policy: Path = Field(EXAMPLE_POLICY, alias="FUSIONBOT_POLICY")
    http_port: int | None = Field(None, alias="FUSIONBOT_HTTP_PORT")
    # Behind a reverse proxy on the same host by default; 0.0.0.0 to listen everywhere.
    http_host: str = Field("127.0.0.1", alias="FUSIONBOT_HTTP_HOST")
    log_level: str = Field("INFO", alias="FUSIONBOT_LOG_LEVEL")

    slack_bot_token: SecretStr | None = Field(None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(None, alias="SLACK_APP_TOKEN")
    slack_api_url: str | None = Field(None, alias="SLACK_API_URL")
    # Installing the app in partners' own workspaces (OAuth; /slack/install).
    slack_client_id: str | None = Field(None, alias="SLACK_CLIENT_ID")
    slack_client_secret: SecretStr | None = Field(None, alias="SLACK_CLIENT_SECRET")
    slack_scopes: str = Field(
        "chat:write,commands,channels:history,groups:history,im:history,im:write,users:read,app_mentions:read",
        alias="SLACK_SCOPES",
    )
    # Must match a redirect URL of the app's config when it lists more than one.
    slack_redirect_uri: str | None = Field(None, alias="SLACK_REDIRECT_URI")

    matrix_homeserver: str | None = Field(None, alias="MATRIX_HOMESERVER")
    matrix_user_id: str | None = Field(None, alias="MATRIX_USER_ID")
    matrix_password: SecretStr | None = Field(None, alias="MATRIX_PASSWORD")
    matrix_access_token: SecretStr | None = Field(None, alias="MATRIX_ACCESS_TOKEN")
    matrix_device_id: str | None = Field(None, alias="MATRIX_DEVICE_ID")

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'fusionbot.db').as_posix()}"

    @property
    def slack_scope_list(self) -> list[str]:
        return [s.strip() for s in self.slack_scopes.split(",") if s.strip()]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], env_file: str | None = None) -> Settings:
        """Build settings from an explicit mapping (tests pass a dict, not os.environ)."""
        known = {f.alias for f in cls.model_fields.values() if f.alias}
        values = {k: v for k, v in environ.items() if k in known and v != ""}
        return cls(_env_file=env_file, **values)  # type: ignore[call-arg]
