"""Settings: one pydantic-settings object, loaded once in the CLI and passed down.

Every setting is an environment variable (``HIK2MQTT_...``, nested with ``__``), or a
line in a ``.env`` file. The names are a public interface: the README table and
``config.example.env`` are checked against the ``description`` of each field by the tests.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from hik2mqtt.core.names import case_clashes
from hik2mqtt.core.untrusted import name_problem
from hik2mqtt.errors import ConfigError
from hik2mqtt.multipart import DEFAULT_MAX_PART_SIZE

ENV_PREFIX = "HIK2MQTT_"
_BAD_TOPIC_CHARS = re.compile(r"[+#\x00]")
_BRIDGE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class MqttSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("localhost", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port.")
    username: str | None = Field(None, description="Broker user name (unset: anonymous).")
    password: SecretStr | None = Field(None, description="Broker password (a secret).")
    tls: bool = Field(False, description="Connect to the broker over TLS.")
    ca_file: Path | None = Field(
        None, description="CA certificate file for the broker's TLS (unset: system CAs)."
    )
    cert_file: Path | None = Field(
        None, description="Client certificate file, for brokers that ask for one (with KEY_FILE)."
    )
    key_file: Path | None = Field(None, description="Private key file of the client certificate.")
    verify_tls: bool = Field(
        True, description="Verify the broker's certificate and host name (false: don't; unsafe)."
    )
    client_id: str = Field(
        default_factory=lambda: f"hik2mqtt-{secrets.token_hex(4)}",
        description="MQTT client id (default: hik2mqtt- and random hex; unique per instance).",
    )
    keepalive: int = Field(30, ge=5, le=3600, description="MQTT keep-alive, seconds.")
    queue_size: int = Field(
        10_000,
        ge=10,
        description="Messages held while the broker is away; past it the newest are dropped.",
    )
    protocol: Literal["5", "3.1.1"] = Field(
        "5",
        description="MQTT version: 5, or 3.1.1; with 5 the bridge falls back to 3.1.1 (one "
        "warning) when the broker refuses 5.",
    )
    read_expiry: int = Field(
        60,
        ge=0,
        le=4_294_967_295,
        description="MQTT 5 message expiry, seconds, of reads, gate decisions, command results "
        "and events: a subscriber that comes back later gets nothing this old; 0: never.",
    )

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value


class GateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Open the gate for known plates (off by default).")
    list: str = Field("allow", description="The plate list whose plates open the gate.")
    min_confidence: int = Field(80, ge=0, le=100, description="Least confidence to open.")
    max_age: float = Field(30.0, gt=0, description="Oldest read that may open, seconds.")
    output: int = Field(1, ge=1, le=64, description="Relay output pulsed to open.")
    pulse: float = Field(1.0, gt=0, le=600, description="How long the output is on, seconds.")
    barrier: bool = Field(
        False, description="Open with the barrier command (barrierGate) instead of an output."
    )


class CameraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(description="Camera host name or address (required).")
    name: str | None = Field(
        None, description="Display name in Home Assistant (default: the camera's key)."
    )
    mode: Literal["stream", "push", "poll"] = Field(
        "stream",
        description="How reads arrive: stream (alertStream), push (the camera POSTs to the "
        "bridge's listener) or poll (traffic cameras' plate list).",
    )
    push_secret: SecretStr | None = Field(
        None,
        description="Push mode: a secret the camera's URL ends with: /hik2mqtt/<name>/<secret>.",
    )
    poll_interval: float = Field(
        1.0, ge=0.2, le=3600, description="Poll mode: seconds between two polls of the plate list."
    )
    port: int | None = Field(
        None, ge=1, le=65535, description="Camera HTTP(S) port (default 80, or 443 with HTTPS)."
    )
    https: bool = Field(False, description="Talk to the camera over HTTPS.")
    verify_tls: bool = Field(True, description="Verify the camera's HTTPS certificate.")
    ca_file: Path | None = Field(
        None, description="CA certificate file that signed the camera's HTTPS certificate."
    )
    username: str = Field("admin", description="Camera user name.")
    password: SecretStr = Field(description="Camera password (required; a secret).")
    channel: int = Field(1, ge=1, le=512, description="Video channel used for manual recognition.")
    idle_timeout: float = Field(
        60.0,
        ge=2,
        le=3600,
        description="Seconds without a byte before the stream is quietly reopened.",
    )
    max_age: float = Field(
        300.0,
        ge=0,
        description="A read older than this (camera time vs bridge clock), seconds, is marked "
        "retransmitted; 0: only the camera's own flag counts.",
    )
    gate: GateSettings = Field(default_factory=GateSettings, description="The gate rule.")
    trigger_interval: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="Least time between two triggers, seconds; more are refused.",
    )

    @model_validator(mode="after")
    def _default_port(self) -> CameraSettings:
        if self.port is None:
            self.port = 443 if self.https else 80
        return self

    @property
    def base_url(self) -> str:
        scheme = "https" if self.https else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


class HomeAssistantSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Publish Home Assistant MQTT discovery.")
    prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix.")


class MetricsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("0.0.0.0", description="Address the metrics/health listener binds to.")  # noqa: S104
    port: int | None = Field(
        None, ge=1, le=65535, description="Port for /metrics and /healthz (unset: off)."
    )


class ListenSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("0.0.0.0", description="Address the push listener binds to.")  # noqa: S104
    port: int = Field(8088, ge=1, le=65535, description="Port of the push listener.")


class ImageSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mqtt: bool = Field(
        True, description="Publish pictures, retained, on <prefix>/<camera>/image/<kind>."
    )
    dir: Path | None = Field(None, description="Folder to write pictures to (unset: no files).")
    keep_days: float | None = Field(
        None, gt=0, description="Delete pictures in the folder older than this many days."
    )


def is_loopback(host: str) -> bool:
    """``host`` (an address, ``[::1]`` too, or a name) is this machine's loopback: an
    address in 127.0.0.0/8 or ``::1``, or the name ``localhost``; any other name is not."""
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # a host name (127.example.com), or not an address at all
        return False


class WebSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(
        "127.0.0.1",
        description="Address the web page binds to; any other than loopback needs a PASSWORD.",
    )
    port: int = Field(8080, ge=0, le=65535, description="Port of the web page (0: no page).")
    password: SecretStr | None = Field(
        None,
        description="Password for the web page and its API (a secret; unset: loopback only, "
        "read-only).",
    )
    session_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="How long a login on the web page lasts, hours."
    )

    published_host: str | None = Field(
        None,
        description="In a container: the host address its page port is published on "
        "(docker-compose.yml sets it from WEB_PUBLISH). A loopback address there lets the "
        "page listen on 0.0.0.0 inside the container without a PASSWORD.",
    )
    url: str | None = Field(
        None,
        description="The page's address as people reach it, e.g. behind a proxy (Home "
        "Assistant links the bridge's device to it; default: http://HOST:PORT/ unless HOST "
        "is 0.0.0.0 or ::).",
    )

    @property
    def enabled(self) -> bool:
        return self.port != 0

    @property
    def link(self) -> str | None:
        """Where Home Assistant's bridge device links to (None: no page, or unknown)."""
        if not self.enabled:
            return None
        if self.url:
            return self.url
        host = self.host.strip("[]")
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - recognising a wildcard, not binding
            return None
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


class HistorySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dir: Path | None = Field(
        None,
        description="Folder for the history of reads, a SQLite file (unset: the last 1,000 "
        "reads in memory).",
    )
    keep_days: float = Field(
        30.0, gt=0, description="Reads older than this many days leave the history."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        # Other lines of a .env file (docker compose's COMPOSE_PROFILES) are not ours;
        # unknown HIK2MQTT_ names are reported by _unknown_top_level, nested ones by the
        # nested models (extra="forbid").
        extra="ignore",
    )

    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="Broker connection.")
    topic_prefix: str = Field("anpr", description="First level of every topic.")
    bridge_id: str | None = Field(
        None,
        description="This bridge's name among several on one broker (letters, digits, - and _): "
        "its own status, camera registry and Home Assistant bridge device; unset: one bridge.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level: DEBUG, INFO, WARNING or ERROR."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as readable text, or one JSON object per line."
    )
    cameras: dict[str, CameraSettings] = Field(
        default_factory=dict, description="Cameras, keyed by name (the topic level)."
    )
    images: ImageSettings = Field(default_factory=ImageSettings, description="Pictures.")
    homeassistant: HomeAssistantSettings = Field(
        default_factory=HomeAssistantSettings, description="Home Assistant discovery."
    )
    metrics: MetricsSettings = Field(
        default_factory=MetricsSettings, description="Prometheus metrics and /healthz."
    )
    listen: ListenSettings = Field(
        default_factory=ListenSettings,
        description="The HTTP listener for push cameras (on only when a camera uses push).",
    )
    web: WebSettings = Field(
        default_factory=WebSettings, description="The web page: live reads, history, actions."
    )
    history: HistorySettings = Field(
        default_factory=HistorySettings, description="The history of reads behind the page."
    )
    events: str = Field(
        "all",
        description="Which other events to publish on <prefix>/<camera>/event/<type>: all, "
        "none, or a comma-separated list of event types (e.g. VMD,linedetection).",
    )
    lists_file: Path | None = Field(
        None, description="Plate lists file, YAML or CSV, read again when it changes."
    )
    duplicate_window: float = Field(
        10.0, ge=0, description="Seconds in which the same plate on a camera is a duplicate."
    )
    duplicates: Literal["flag", "drop"] = Field(
        "flag", description="flag: publish duplicates with duplicate true; drop: don't publish."
    )
    health_file: Path | None = Field(
        None,
        description="File the bridge rewrites every 5 s with its state, for "
        "`hik2mqtt health` (a container HEALTHCHECK); unset: none.",
    )
    spool_dir: Path | None = Field(
        None,
        description="Folder for the spool of reads waiting for the broker, and for poll "
        "cameras' place in their plate list (unset: in memory).",
    )
    spool_max_reads: int = Field(
        100_000, ge=100, description="Reads the spool holds at most; past it the oldest go."
    )
    max_part_size: int = Field(
        DEFAULT_MAX_PART_SIZE,
        ge=64 * 1024,
        description="Largest stream part accepted, bytes; a larger one resets the stream.",
    )

    @model_validator(mode="before")
    @classmethod
    def _upper_log_level(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("log_level"), str):
            data["log_level"] = data["log_level"].upper()
        return data

    @field_validator("bridge_id", mode="before")
    @classmethod
    def _empty_bridge_id(cls, value: Any) -> Any:
        """``HIK2MQTT_BRIDGE_ID=`` (empty, as in an example file) means unset."""
        return None if isinstance(value, str) and not value.strip() else value


def _variable(loc: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc)


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(error.get("loc", ()))
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "missing":
        message = "required, not set"
    elif error.get("type") == "extra_forbidden":
        message = "unknown setting"
    elif not any("password" in str(part) for part in loc):
        value = error.get("input")
        if isinstance(value, str | int | float):
            message = f"{message} (got {str(value)[:60]!r})"
    return f"{_variable(loc)}: {message}"


def _our_variables(env_file: Path | None) -> list[str]:
    """The names of our variables, from the environment and the ``.env`` file."""
    names = [k for k in os.environ if k.upper().startswith(ENV_PREFIX)]
    if env_file is not None and env_file.is_file():
        for line in env_file.read_text(encoding="utf-8", errors="replace").splitlines():
            key = line.strip().removeprefix("export ").split("=", 1)[0].strip()
            if key.upper().startswith(ENV_PREFIX):
                names.append(key)
    return names


def _unknown_top_level(env_file: Path | None) -> list[str]:
    known = {name.upper() for name in Settings.model_fields}
    names = _our_variables(env_file)
    problems = []
    for name in sorted(set(names)):
        first = name[len(ENV_PREFIX) :].split("__", 1)[0].upper()
        if first not in known:
            problems.append(f"{name}: unknown setting")
    return problems


def _unreadable_env_file(env_file: Path | None) -> str | None:
    """Why the ``.env`` file cannot be used as settings (None: it can, or there is none)."""
    if env_file is None or not env_file.exists():
        return None
    try:
        data = env_file.read_bytes()
    except OSError as exc:
        return f"{env_file}: cannot read it: {exc.strerror or exc}"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"{env_file}: line {line} is not UTF-8 text; save the file as UTF-8"
    return None


def _check(settings: Settings, *, require_cameras: bool) -> list[str]:
    problems = []
    prefix = settings.topic_prefix
    if (
        not prefix
        or prefix.startswith("/")
        or prefix.endswith("/")
        or _BAD_TOPIC_CHARS.search(prefix)
    ):
        problems.append(
            f"{ENV_PREFIX}TOPIC_PREFIX: must be a non-empty topic without +, # "
            f"or a leading/trailing / (got {prefix!r})"
        )
    bridge_id = settings.bridge_id
    if bridge_id is not None and not _BRIDGE_ID.fullmatch(bridge_id):
        problems.append(
            f"{ENV_PREFIX}BRIDGE_ID: letters, digits, - and _ only, at most 64 "
            f"(got {bridge_id[:70]!r})"
        )
    if require_cameras and not settings.cameras:
        problems.append(
            f"{ENV_PREFIX}CAMERAS: no camera configured "
            f"(set {ENV_PREFIX}CAMERAS__<NAME>__HOST and __PASSWORD)"
        )
    # The same rule as for a name read back from the broker (core/untrusted.py).
    problems.extend(
        f"{ENV_PREFIX}CAMERAS__{name.upper()}: {problem}"
        for name in settings.cameras
        if (problem := name_problem(name)) is not None
    )
    if settings.lists_file is not None and not settings.lists_file.is_file():
        problems.append(f"{ENV_PREFIX}LISTS_FILE: no such file: {settings.lists_file}")
    files = [
        ("MQTT__CA_FILE", settings.mqtt.ca_file),
        ("MQTT__CERT_FILE", settings.mqtt.cert_file),
        ("MQTT__KEY_FILE", settings.mqtt.key_file),
    ]
    files += [(f"CAMERAS__{n.upper()}__CA_FILE", c.ca_file) for n, c in settings.cameras.items()]
    for variable, path in files:
        if path is not None and not path.is_file():
            problems.append(f"{ENV_PREFIX}{variable}: no such file: {path}")
    web = settings.web
    if web.enabled and web.password is None and web.published_host is not None:
        # In a container the page listens on 0.0.0.0 (or nobody reaches it); what decides
        # who can reach it is where compose publishes its port on the host.
        if not is_loopback(web.published_host):
            problems.append(
                f"{ENV_PREFIX}WEB__PASSWORD: required when the page is published on "
                f"{web.published_host!r} (WEB_PUBLISH, not loopback); set it, or publish "
                "on 127.0.0.1"
            )
    elif web.enabled and not web.loopback and web.password is None:
        problems.append(
            f"{ENV_PREFIX}WEB__PASSWORD: required when the page listens on {web.host!r} "
            f"(not loopback); set it, or set {ENV_PREFIX}WEB__HOST=127.0.0.1"
        )
    if web.password is not None and len(web.password.get_secret_value()) < 8:
        problems.append(f"{ENV_PREFIX}WEB__PASSWORD: too short (at least 8 characters)")
    history_dir = settings.history.dir
    if history_dir is not None and history_dir.exists() and not history_dir.is_dir():
        problems.append(f"{ENV_PREFIX}HISTORY__DIR: not a folder: {settings.history.dir}")
    if (settings.mqtt.cert_file is None) != (settings.mqtt.key_file is None):
        problems.append(
            f"{ENV_PREFIX}MQTT__CERT_FILE: a client certificate needs both CERT_FILE and KEY_FILE"
        )
    return problems


def load_settings(
    env_file: Path | None = Path(".env"),
    *,
    require_cameras: bool = True,
    **overrides: Any,
) -> Settings:
    """Load and check the settings; raise ConfigError with one line per problem."""
    unreadable = _unreadable_env_file(env_file)
    if unreadable is not None:
        raise ConfigError([unreadable])
    problems = _unknown_top_level(env_file)
    # GATE and gate: one topic level, two cameras; pydantic would merge them silently.
    cameras = ENV_PREFIX + "CAMERAS__"
    problems.extend(case_clashes(_our_variables(env_file), cameras))
    given = [cameras + str(name) + "__" for name in overrides.get("cameras") or ()]
    problems.extend(case_clashes(given, cameras))
    settings: Settings | None = None
    try:
        settings = Settings(_env_file=env_file, **overrides)
    except ValidationError as exc:
        problems.extend(_describe(dict(error)) for error in exc.errors())
    except (OSError, UnicodeDecodeError) as exc:  # the file changed under us
        raise ConfigError([f"{env_file}: cannot read it: {exc}"]) from exc
    except SettingsError as exc:  # a nested setting given whole, as JSON that isn't
        field = re.search(r'field "(\w+)"', str(exc))
        name = _variable((field.group(1),)) if field else "a setting"
        raise ConfigError(
            [f"{name}: not valid JSON; set its parts instead ({name}__<PART>)"]
        ) from exc
    if settings is not None:
        # Camera names are the topic level: lower-cased whatever the env's case.
        settings.cameras = {name.lower(): cam for name, cam in settings.cameras.items()}
        problems.extend(_check(settings, require_cameras=require_cameras))
    if problems or settings is None:
        raise ConfigError(problems or ["invalid configuration"])
    return settings


def setting_rows() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting, cameras as ``<NAME>``.

    The README table and ``config.example.env`` are checked against this list.
    """
    rows: list[tuple[str, str, str]] = []

    def default_of(info: Any) -> str:
        if info.is_required():
            return "required"
        if info.default_factory is not None:
            return ""
        return (
            ""
            if info.default is None
            else str(info.default).lower()
            if isinstance(info.default, bool)
            else str(info.default)
        )

    nested: dict[str, type[BaseModel]] = {
        "mqtt": MqttSettings,
        "images": ImageSettings,
        "cameras": CameraSettings,
        "listen": ListenSettings,
        "metrics": MetricsSettings,
        "homeassistant": HomeAssistantSettings,
        "web": WebSettings,
        "history": HistorySettings,
    }

    def walk(prefix: str, model: type[BaseModel]) -> None:
        for sub, sub_info in model.model_fields.items():
            kind = sub_info.annotation
            inner = kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None
            if inner is not None:
                walk(f"{prefix}__{sub.upper()}", inner)
            else:
                rows.append(
                    (f"{prefix}__{sub.upper()}", default_of(sub_info), sub_info.description or "")
                )

    for name, info in Settings.model_fields.items():
        model = nested.get(name)
        if model is None:
            rows.append((_variable((name,)), default_of(info), info.description or ""))
            continue
        middle = "__<NAME>" if name == "cameras" else ""
        walk(f"{ENV_PREFIX}{name.upper()}{middle}", model)
    return rows
