"""Start and drive a throwaway Synapse homeserver on 127.0.0.1.

Synapse runs as a child process (`python -m synapse.app.homeserver`): it is AGPL-3.0
and a test-only dependency, so nothing here imports it. The server is offline by
construction — a single `client` listener on 127.0.0.1, no federation, no key servers,
no stats — and every rate limit is relaxed so tests measure our code, not Synapse's
throttling.

The child is put in its own process group (so stop() can signal it and anything it
spawns) and, on Linux, asks the kernel to SIGKILL it when its parent dies, so a killed
test run leaves no orphan homeserver behind. An atexit hook covers ordinary exits that
skip stop().
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple, Self

DEFAULT_SERVER_NAME = "fusion.test"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 40

_RELAXED = {"per_second": 1000, "burst_count": 10000}

# Synapse's defaults (e.g. 0.2 messages/s, ~5 logins per address) would throttle a test
# suite; 0 would mean "never allowed" for some of them, so use large numbers instead.
RATE_LIMITS: dict[str, Any] = {
    "rc_message": _RELAXED,
    "rc_registration": _RELAXED,
    "rc_registration_token_validity": _RELAXED,
    "rc_login": {"address": _RELAXED, "account": _RELAXED, "failed_attempts": _RELAXED},
    "rc_admin_redaction": _RELAXED,
    "rc_joins": {"local": _RELAXED, "remote": _RELAXED},
    "rc_joins_per_room": _RELAXED,
    "rc_key_requests": _RELAXED,
    "rc_3pid_validation": _RELAXED,
    "rc_invites": {"per_room": _RELAXED, "per_user": _RELAXED, "per_issuer": _RELAXED},
    "rc_third_party_invite": _RELAXED,
    "rc_media_create": _RELAXED,
    "rc_presence": {"per_user": _RELAXED},
    "rc_delayed_event_mgmt": _RELAXED,
    "rc_room_creation": _RELAXED,
    "rc_reports": _RELAXED,
    "rc_user_directory": _RELAXED,
    "rc_profile": _RELAXED,
}

# No proxy, ever: the homeserver is on loopback and nothing may leave the machine.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_PR_SET_PDEATHSIG = 1


class SynapseStartError(RuntimeError):
    """Synapse did not come up; the message carries the tail of its logs."""


class SynapseAPIError(RuntimeError):
    """A homeserver HTTP call answered with an error status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body}")
        self.status = status
        self.body = body


class RegisteredUser(NamedTuple):
    user_id: str
    access_token: str
    device_id: str


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and that no earlier server in
    this process used, so a client left pointing at a stopped server can't reach a new one.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL when this process dies.

    The kernel tracks the parent *thread*: if started from a short-lived worker thread,
    the server would be killed when that thread exits. So only arm it from the main
    thread; other callers rely on stop() and the atexit guard.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork, not in the child
    prctl.restype = ctypes.c_int
    parent_pid = os.getpid()
    args = (ctypes.c_int(_PR_SET_PDEATHSIG), *map(ctypes.c_ulong, (signal.SIGKILL, 0, 0, 0)))

    def preexec() -> None:
        if prctl(*args) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no file)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


class SynapseServer:
    """One Synapse homeserver in a temporary directory.

    start() may be called again after stop(): the server comes back on the same port with
    the same database, users and signing key (useful for restart tests). close() stops it
    and deletes the directory if this object created it.
    """

    def __init__(
        self,
        server_name: str = DEFAULT_SERVER_NAME,
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        start_timeout: float = START_TIMEOUT,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        """extra_config is merged over the generated homeserver.yaml (top-level keys)."""
        self._server_name = server_name
        self._extra_config = dict(extra_config or {})
        self._port = port
        self._data_dir = data_dir
        self._owns_data_dir = data_dir is None
        self._start_timeout = start_timeout
        self._shared_secret = secrets.token_hex(32)
        self._macaroon_secret = secrets.token_hex(32)
        self._form_secret = secrets.token_hex(32)
        self._process: subprocess.Popen[bytes] | None = None
        self._console: IO[bytes] | None = None

    # -- what tests read -------------------------------------------------------------

    @property
    def server_name(self) -> str:
        return self._server_name

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("Synapse has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="synapse-"))
        return self._data_dir

    @property
    def config_path(self) -> Path:
        return self.data_dir / "homeserver.yaml"

    @property
    def log_path(self) -> Path:
        """Synapse's own log (WARNING and above)."""
        return self.data_dir / "homeserver.log"

    @property
    def console_path(self) -> Path:
        """The child's stdout and stderr: startup and config errors land here."""
        return self.data_dir / "console.log"

    @property
    def registration_shared_secret(self) -> str:
        return self._shared_secret

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self._server_name}"

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start Synapse and return once the client API answers.

        Call it from the main thread (see _die_with_parent_hook). Raises
        SynapseStartError with the tail of the logs if it isn't up within the timeout.
        """
        attempts = 1 if self._port is not None else 3
        for attempt in range(1, attempts + 1):
            self.launch()
            try:
                self.wait_until_ready()
                return
            except SynapseStartError as error:
                # Another process may take the free port between our probe and Synapse's
                # bind; try a fresh one rather than failing the whole session.
                port_taken = "Address already in use" in str(error)
                if attempt == attempts or not port_taken:
                    raise
                self._port = None

    def launch(self) -> None:
        """Spawn Synapse without waiting for it: launch several servers, then call
        wait_until_ready() on each to start them in parallel. start() does both."""
        if self.running:
            raise RuntimeError(f"Synapse is already running at {self.url}")
        if self._port is None:
            self._port = free_port()
        self._write_config()
        if self._console is not None:
            self._console.close()
        self._console = self.console_path.open("ab")
        env = dict(os.environ)
        env.pop("PYTHONWARNINGS", None)  # the test run's warning policy is not Synapse's
        self._process = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            cwd=self.data_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent_hook(),
        )
        _LIVE.add(self)

    def wait_until_ready(self) -> None:
        """Block until the launched server answers GET /_matrix/client/versions.

        On failure the process is killed and SynapseStartError carries its log tails.
        """
        process = self._process
        if process is None:
            raise RuntimeError("Synapse was not launched")
        deadline = time.monotonic() + self._start_timeout
        try:
            while True:
                exit_code = process.poll()
                if exit_code is not None:
                    raise self._start_error(f"Synapse exited with code {exit_code} while starting")
                try:
                    self.request("GET", "/_matrix/client/versions", timeout=2.0)
                    return
                except (OSError, SynapseAPIError):
                    pass  # not listening yet (URLError is an OSError)
                if time.monotonic() > deadline:
                    raise self._start_error(
                        f"Synapse did not answer on {self.url} within {self._start_timeout:.0f} s"
                    )
                time.sleep(0.05)
        except BaseException:
            self._stop(grace=0)
            raise

    def stop(self) -> None:
        """Terminate Synapse: SIGTERM to its process group, SIGKILL if it lingers."""
        self._stop(grace=STOP_TIMEOUT)

    def _stop(self, grace: float) -> None:
        process = self._process
        if process is None:
            return
        try:
            if grace > 0 and process.poll() is None:
                self._signal_group(process, signal.SIGTERM)
                try:
                    process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            if process.poll() is None:
                self._signal_group(process, signal.SIGKILL)
                process.wait()
        finally:
            self._process = None
            _LIVE.discard(self)
            if self._console is not None:
                self._console.close()
                self._console = None

    def close(self) -> None:
        """stop(), then delete the data directory if this object created it."""
        self.stop()
        if self._owns_data_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        # start_new_session=True made the child a session and process-group leader.
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _start_error(self, summary: str) -> SynapseStartError:
        return SynapseStartError(
            f"{summary}\n--- {self.log_path} (tail) ---\n{_tail(self.log_path)}"
            f"\n--- {self.console_path} (tail) ---\n{_tail(self.console_path)}"
        )

    def _write_config(self) -> None:
        data = self.data_dir
        log_config = {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "precise": {"format": "%(asctime)s %(name)s:%(lineno)d %(levelname)s %(message)s"}
            },
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "formatter": "precise",
                    "filename": str(self.log_path),
                    "encoding": "utf-8",
                }
            },
            "root": {"level": "WARNING", "handlers": ["file"]},
        }
        config: dict[str, Any] = {
            "server_name": self._server_name,
            "public_baseurl": f"{self.url}/",
            "pid_file": str(data / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(data / "homeserver.db")}},
            "log_config": str(data / "log.config"),
            "media_store_path": str(data / "media_store"),
            "signing_key_path": str(data / "signing.key"),
            "registration_shared_secret": self._shared_secret,
            "macaroon_secret_key": self._macaroon_secret,
            "form_secret": self._form_secret,
            "report_stats": False,
            "enable_metrics": False,
            "url_preview_enabled": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "presence": {"enabled": False},
            "bcrypt_rounds": 4,
            **RATE_LIMITS,
            **self._extra_config,
        }
        # JSON is YAML: no YAML library needed on our side.
        (data / "log.config").write_text(json.dumps(log_config, indent=2), encoding="utf-8")
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")

    # -- HTTP ------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        access_token: str | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """One JSON call to the homeserver; raises SynapseAPIError on an error status."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if access_token is not None:
            headers["Authorization"] = f"Bearer {access_token}"
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                raw: bytes = response.read()
        except urllib.error.HTTPError as error:
            with error:
                detail = error.read().decode("utf-8", errors="replace")
            raise SynapseAPIError(method, path, error.code, detail) from None
        result: dict[str, Any] = json.loads(raw) if raw else {}
        return result

    def register(
        self,
        localpart: str,
        password: str,
        admin: bool = False,
        *,
        displayname: str | None = None,
    ) -> RegisteredUser:
        """Create a user through the shared-secret admin API (not rate limited)."""
        path = "/_synapse/admin/v1/register"
        nonce: str = self.request("GET", path)["nonce"]
        mac = hmac.new(self._shared_secret.encode(), digestmod=hashlib.sha1)
        for part in (nonce, localpart, password):
            mac.update(part.encode("utf-8"))
            mac.update(b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        body: dict[str, Any] = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        if displayname is not None:
            body["displayname"] = displayname
        answer = self.request("POST", path, body)
        return RegisteredUser(answer["user_id"], answer["access_token"], answer["device_id"])

    def override_ratelimit(
        self,
        user_id: str,
        admin_token: str,
        *,
        messages_per_second: int = 0,
        burst_count: int = 0,
    ) -> dict[str, Any]:
        """Exempt a user from message rate limits (0/0 means unlimited), as an operator
        would for a production bot. Returns the override Synapse now holds."""
        return self.request(
            "POST",
            f"/_synapse/admin/v1/users/{urllib.parse.quote(user_id, safe='')}/override_ratelimit",
            {"messages_per_second": messages_per_second, "burst_count": burst_count},
            access_token=admin_token,
        )

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"<SynapseServer {self._server_name} {where} pid={self.pid}>"


_LIVE: set[SynapseServer] = set()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        server._stop(grace=0)
        if server._owns_data_dir and server._data_dir is not None:
            shutil.rmtree(server._data_dir, ignore_errors=True)
    _LIVE.clear()
