"""The organisation's policy file (TOML), as validated pydantic models.

The names here are an operator's contract (see DESIGN.md): extend, never rename.
"""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.addresses import is_channel, validate_address
from bot.categories import CATEGORIES
from bot.policy_checks import PolicyConflicts, conflicts, sections_of
from bot.tips import Urgency
from bot.tlp import TLP

Address = Annotated[str, AfterValidator(validate_address)]


def _category_or_star(value: str) -> str:
    code = value.strip().upper()
    if code != "*" and code not in CATEGORIES:
        raise ValueError(f'unknown category {value!r}; use one of {", ".join(CATEGORIES)} or "*"')
    return code


CategoryCode = Annotated[str, AfterValidator(_category_or_star)]


def _channel(value: str) -> str:
    if not is_channel(value):
        raise ValueError(f"{value!r} is a person, not a channel")
    return value


Channel = Annotated[Address, AfterValidator(_channel)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Center(_Strict):
    name: str
    timezone: str = "UTC"
    regions: list[str] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (e.g. America/New_York)") from exc
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Roles(_Strict):
    officers: list[Address | Literal["*"]] = Field(default_factory=lambda: ["*"])
    analysts: list[Address] = Field(default_factory=list)
    supervisors: list[Address] = Field(default_factory=list)
    admins: list[Address] = Field(default_factory=list)


class Sla(_Strict):
    """Minutes before an untriaged tip gets a reminder, by urgency."""

    immediate: int = Field(15, gt=0)
    priority: int = Field(60, gt=0)
    routine: int = Field(1440, gt=0)

    def minutes_for(self, urgency: Urgency) -> int:
        return int(getattr(self, urgency.value))


class Retention(_Strict):
    rejected_days: int = Field(30, gt=0)
    review_years: int = Field(5, gt=0)


class MatrixPolicy(_Strict):
    allowed_servers: list[str] | None = None


class Intake(_Strict):
    channels: list[Channel]


class Review(_Strict):
    name: str
    channels: list[Channel] = Field(min_length=1)
    categories: list[CategoryCode] = Field(default_factory=lambda: ["*"])
    urgencies: list[Urgency] = Field(default_factory=lambda: list(Urgency))

    def takes(self, category: str, urgency: Urgency) -> bool:
        return ("*" in self.categories or category in self.categories) and urgency in self.urgencies


class Partner(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str
    sector: Literal["federal", "state", "local", "tribal", "territorial", "private"]
    max_tlp: TLP  # a clearance is stated, never assumed
    caveats: list[str] = Field(default_factory=list)
    categories: list[CategoryCode] = Field(default_factory=lambda: ["*"])
    regions: list[str] = Field(default_factory=lambda: ["*"])
    delivery: Literal["immediate", "digest"] = "immediate"
    digest: str = "0 7 * * *"
    channels: list[Channel] = Field(default_factory=list)
    internal_channels: list[Channel] = Field(default_factory=list)
    red_recipients: list[Address] = Field(default_factory=list)

    @field_validator("max_tlp", mode="before")
    @classmethod
    def _tlp(cls, value: object) -> object:
        # The file is the reviewed record of each clearance: it spells the labels the
        # alerts carry, so reviewers never compare WHITE in the file with CLEAR on a card.
        return TLP.parse(value, accept_white=False) if isinstance(value, str) else value

    @field_validator("caveats")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [c.strip().upper() for c in value]

    @field_validator("digest")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f'not a cron expression ({exc}); e.g. "0 7 * * *"') from exc
        return value

    @field_validator("red_recipients")
    @classmethod
    def _people(cls, value: list[str]) -> list[str]:
        for address in value:
            if is_channel(address):
                raise ValueError(f"{address!r} is a channel; TLP:RED goes only to named people")
        return value


class Policy(_Strict):
    center: Center
    roles: Roles = Field(default_factory=Roles)
    sla: Sla = Field(default_factory=Sla)
    retention: Retention = Field(default_factory=Retention)
    matrix: MatrixPolicy = Field(default_factory=MatrixPolicy)
    # The caveats this center uses; a partner is cleared only for caveats listed here.
    caveats: list[str] = Field(default_factory=lambda: ["LES", "CUI", "U//FOUO"])
    intake: list[Intake] = Field(default_factory=list)
    review: list[Review] = Field(min_length=1)
    partners: list[Partner] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        found = conflicts(sections_of(self))
        if found:  # every one, each with its place, for the loader to name
            raise PolicyConflicts(found)
        return self

    # --- questions the core asks -------------------------------------------------------
    def is_analyst(self, who: str) -> bool:
        return who in self.roles.analysts or who in self.roles.supervisors

    def is_supervisor(self, who: str) -> bool:
        return who in self.roles.supervisors

    def is_admin(self, who: str) -> bool:
        return who in self.roles.admins

    def may_file(self, who: str, channel: str, is_dm: bool) -> bool:
        if who in self.roles.officers or self.is_analyst(who):
            return True
        return "*" in self.roles.officers and (is_dm or self.is_intake(channel))

    def is_intake(self, channel: str) -> bool:
        return any(channel in intake.channels for intake in self.intake)

    def is_review_channel(self, channel: str) -> bool:
        return any(channel in review.channels for review in self.review)

    def review_for(self, category: str, urgency: Urgency) -> Review:
        """First matching [[review]] wins (validation guarantees one matches)."""
        return next(r for r in self.review if r.takes(category, urgency))

    def partner(self, partner_id: str) -> Partner | None:
        return next((p for p in self.partners if p.id == partner_id), None)

    @property
    def review_channels(self) -> list[str]:
        return list(dict.fromkeys(ch for review in self.review for ch in review.channels))
