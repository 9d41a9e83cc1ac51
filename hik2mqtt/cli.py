"""Command line: ``hik2mqtt run | simulate | demo``; logging set-up, signals, exit codes.

Exit codes: 0 after a clean stop, 2 for bad configuration or usage, 1 for anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from hik2mqtt import __version__
from hik2mqtt.config import ENV_PREFIX, CameraSettings, Settings, load_settings
from hik2mqtt.errors import ConfigError
from hik2mqtt.logsafe import SecretMasker, escape, escape_lines, format_exception
from hik2mqtt.numbers import read_number

log = logging.getLogger("hik2mqtt")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


class RedactingFormatter(logging.Formatter):
    """One safe line per record: camera text escaped, secrets masked (a last line of defence).

    The message is escaped (:func:`hik2mqtt.logsafe.escape`: no newline or control
    character can forge a line); a traceback keeps its lines, its exception messages
    escaped. Secrets are masked where they stand as values and, when strong enough, as
    whole tokens (:class:`hik2mqtt.logsafe.SecretMasker`). With ``json=True`` each line is
    one JSON object (time, level, logger, message, and the traceback if any).
    """

    def __init__(self, fmt: str, secrets: Sequence[str], *, json: bool = False) -> None:
        super().__init__(fmt)
        self._mask = SecretMasker(secrets)
        self._json = json

    def formatException(self, ei: Any) -> str:
        exc = ei[1] if isinstance(ei, tuple) else None
        if isinstance(exc, BaseException):
            return format_exception(exc, self._mask, self._mask.tokens)
        return self._mask(escape(super().formatException(ei)))

    def format(self, record: logging.LogRecord) -> str:
        # Every value is masked first, then the line is encoded: a mask cannot break JSON.
        try:
            message = escape(record.getMessage())
        except Exception:
            message = escape(f"{record.msg!r} {record.args!r}")
        message = self._mask(message)
        trace = self.formatException(record.exc_info) if record.exc_info else ""
        if record.stack_info:
            stack = self._mask.tokens(escape_lines(record.stack_info))
            trace = (trace + "\n" if trace else "") + stack
        if self._json:
            doc = {
                "time": self.formatTime(record),
                "level": record.levelname,
                "logger": record.name,
                "message": message,
            }
            if trace:
                doc["traceback"] = trace
            return json.dumps(doc, ensure_ascii=False)
        record.message = message
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        return f"{text}\n{trace}" if trace else text


def secrets_of(settings: Settings) -> list[str]:
    """Every secret in the settings: camera and broker passwords, push secrets."""
    found = [cam.password.get_secret_value() for cam in settings.cameras.values()]
    found += [
        cam.push_secret.get_secret_value()
        for cam in settings.cameras.values()
        if cam.push_secret is not None
    ]
    if settings.mqtt.password is not None:
        found.append(settings.mqtt.password.get_secret_value())
    return found


def setup_logging(level: str, secrets: Sequence[str] = (), *, json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", secrets, json=json)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if level != "DEBUG":
        logging.getLogger("urllib3").setLevel(logging.WARNING)
        # uvicorn's "Started server process" / "Shutting down", once per listener, name no
        # listener: ours say which is on which port.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


_SIGNALS: list[int] = []  # signals received, appended by the handler


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT stop the command: see :func:`_wait_for_stop`.

    The handler only appends to a list. It runs in the main thread between any two
    bytecodes; taking a lock there (``Event.set``, or logging) can deadlock against the
    main thread holding the same lock, so the main thread notices the signal instead.
    """
    del stop  # the main thread sets it in _wait_for_stop

    def handler(signum: int, _frame: FrameType | None) -> None:
        _SIGNALS.append(signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _wait_for_stop(stop: threading.Event) -> None:
    """Wait (in the main thread) until ``stop`` is set or a stop signal came."""
    while not stop.wait(0.1):
        if _SIGNALS:
            log.info("received %s; stopping", signal.Signals(_SIGNALS[0]).name)
            stop.set()


def _load(env_file: Path | None, *, require_cameras: bool = True, **overrides: object) -> Settings:
    if env_file is not None and not env_file.is_file():
        raise ConfigError([f"--env-file: no such file: {env_file}"])
    return load_settings(
        env_file if env_file is not None else Path(".env"),
        require_cameras=require_cameras,
        **overrides,
    )


def _run_bridge(settings: Settings, stop: threading.Event) -> int:
    from hik2mqtt.bridge import Bridge  # noqa: PLC0415 - keeps `--help` fast

    bridge = Bridge(settings=settings)
    bridge.start()
    _wait_for_stop(stop)
    bridge.stop()
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    settings = _load(args.env_file)
    setup_logging(settings.log_level, secrets_of(settings), json=settings.log_format == "json")
    stop = threading.Event()
    _stop_on_signals(stop)
    return _run_bridge(settings, stop)


def cmd_simulate(args: argparse.Namespace) -> int:
    from hik2mqtt.simulator import Simulator  # noqa: PLC0415

    setup_logging("DEBUG" if args.verbose else "INFO", [args.password])
    sim = Simulator(
        host=args.host,
        port=args.port,
        username=args.username,
        password=args.password,
        interval=args.interval,
        heartbeat=args.heartbeat,
        picture_size=args.picture_size,
    )
    stop = threading.Event()
    _stop_on_signals(stop)
    with sim:
        log.info(
            "camera simulator on %s (user %s); a read every %s s",
            sim.url,
            args.username,
            args.interval,
        )
        _wait_for_stop(stop)
    return EXIT_OK


def _broker_address(value: str) -> tuple[str, int | None]:
    """``--broker HOST``, ``HOST:PORT`` or ``[IPv6]:PORT``."""
    host, port_text = value, ""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    if not host:
        raise argparse.ArgumentTypeError(f"no host in {value!r}")
    if not port_text:
        return host, None
    port = read_number(port_text, (1, 65535))
    if port is None:
        raise argparse.ArgumentTypeError(f"port must be 1-65535: {port_text!r}")
    return host, port


def _demo_host_source(args: argparse.Namespace) -> str | None:
    """Where the broker host came from when the user chose it; None when it's the default."""
    if args.broker is not None:
        return "--broker"
    name = f"{ENV_PREFIX}MQTT__HOST"
    if any(key.upper() == name for key in os.environ):
        return f"{name} from the environment"
    if args.env_file is not None:
        lines = args.env_file.read_text(encoding="utf-8", errors="replace").splitlines()
        keys = (line.strip().removeprefix("export ").split("=", 1)[0].strip() for line in lines)
        if any(key.upper() == name for key in keys):
            return f"{name} from {args.env_file}"
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    """Simulator + bridge + a subscriber printing what arrives, in one process.

    Settings come from the environment and ``--env-file`` only: a ``./.env`` is ignored,
    as the one made for docker compose names a broker (``mosquitto``) that only exists
    inside compose. When the user chose no broker host and nothing answers at the default
    one, an embedded broker is started on loopback for the demo's lifetime.
    """
    from hik2mqtt import embedded_broker  # noqa: PLC0415
    from hik2mqtt.mqtt import Incoming, subscriber  # noqa: PLC0415
    from hik2mqtt.simulator import Simulator  # noqa: PLC0415

    if args.env_file is None and Path(".env").is_file():
        print(
            "demo: ignoring ./.env (the demo reads HIK2MQTT_* from the environment; "
            "`hik2mqtt demo --env-file .env` reads the file too)",
            flush=True,
        )
    if args.env_file is not None and not args.env_file.is_file():
        raise ConfigError([f"--env-file: no such file: {args.env_file}"])
    host_source = _demo_host_source(args)
    settings = load_settings(args.env_file, require_cameras=False)
    if args.broker is not None:
        host, port = args.broker
        settings.mqtt = settings.mqtt.model_copy(
            update={"host": host, "port": port or settings.mqtt.port}
        )
    setup_logging(settings.log_level, secrets_of(settings))
    where = f"{settings.mqtt.host}:{settings.mqtt.port}"
    broker: embedded_broker.EmbeddedBroker | None = None
    if host_source is None and not embedded_broker.answers(settings.mqtt.host, settings.mqtt.port):
        try:
            broker = embedded_broker.start(settings.mqtt.port)
        except embedded_broker.EmbeddedBrokerError as exc:
            print(
                f"demo: no MQTT broker at {where}, and none could be started: {exc}",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        settings.mqtt = settings.mqtt.model_copy(
            update={
                "host": broker.host,
                "port": broker.port,
                "tls": False,
                "username": None,
                "password": None,
                # amqtt speaks MQTT 3.1.1 only: say so rather than be refused and fall back
                "protocol": "3.1.1" if broker.name == "amqtt" else settings.mqtt.protocol,
            }
        )
        print(
            f"demo: no MQTT broker at {where}; started an embedded one ({broker.name}) "
            f"on {broker.host}:{broker.port}, stopped on exit",
            flush=True,
        )

    prefix = settings.topic_prefix

    def show(message: Incoming) -> None:
        payload = message.payload
        if "/image/" in message.topic:
            text = f"<JPEG, {len(payload)} bytes>"
        else:
            try:
                text = json.dumps(json.loads(payload), ensure_ascii=False)
            except ValueError:
                text = payload.decode("utf-8", "replace")
        print(f"{message.topic} {text}", flush=True)

    if broker is None and not embedded_broker.answers(settings.mqtt.host, settings.mqtt.port):
        chosen = f" ({host_source})" if host_source else ""
        print(
            f"cannot reach the MQTT broker at {where}{chosen}; start it, or leave "
            "HIK2MQTT_MQTT__HOST and --broker unset and the demo starts its own",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    # The same client as the bridge's (credentials, TLS, protocol), listening only.
    watcher = subscriber(
        settings.mqtt,
        client_id=f"{settings.mqtt.client_id}-demo",
        topics=[f"{prefix}/#"],
        on_incoming=show,
    )
    sim = Simulator(interval=args.interval, password="demo-password")  # noqa: S106
    sim.start()
    camera = CameraSettings.model_validate(
        {"host": sim.host, "port": sim.port, "username": sim.username, "password": sim.password}
    )
    settings.cameras = {"demo": camera}
    page = ""
    if settings.web.enabled:
        if not _port_free(settings.web.host, settings.web.port):  # the demo takes another
            settings.web = settings.web.model_copy(update={"port": _port_free(settings.web.host)})
        page = f" The web page: http://{settings.web.host}:{settings.web.port}/ ."
    watcher.start()
    chosen = f" ({host_source})" if host_source else ""
    print(
        f"demo: simulated camera at {sim.url}, a read every {args.interval} s; "
        f"showing {prefix}/# on {settings.mqtt.host}:{settings.mqtt.port}{chosen}.{page} "
        "Ctrl-C stops.",
        flush=True,
    )
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        return _run_bridge(settings, stop)
    finally:
        watcher.stop([])
        sim.stop()
        if broker is not None:
            broker.stop()


def _port_free(host: str, port: int = 0) -> int:
    """``port`` when it can be listened on at ``host`` (0: a free one chosen), else 0."""
    import socket  # noqa: PLC0415 - only the demo needs it

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.bind((host.strip("[]"), port))
            return int(sock.getsockname()[1])
    except OSError:
        return 0


def health_problems(path: Path, *, max_age: float, now: float | None = None) -> list[str]:
    """What is wrong according to the bridge's health file (empty: healthy)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return [f"no readable health file {path}: {exc}"]
    if not isinstance(doc, dict):
        return [f"no readable health file {path}: not a JSON object"]
    if doc.get("stopped"):
        return ["the bridge has stopped"]
    age = (now if now is not None else time.time()) - float(doc.get("time", 0))
    problems = []
    if age > max_age:
        problems.append(f"the bridge last wrote its state {age:.0f} s ago")
    if not doc.get("broker"):
        problems.append("not connected to the MQTT broker")
    for camera, status in sorted(dict(doc.get("cameras", {})).items()):
        if status != "online":
            problems.append(f"camera {camera} is {status}")
    problems += [str(p) for p in doc.get("problems", []) if p]  # the page, its history
    return problems


def cmd_check(args: argparse.Namespace) -> int:
    """Try the configuration against the broker and each camera; non-zero on a problem."""
    from hik2mqtt.check import run_checks  # noqa: PLC0415

    settings = _load(args.env_file)
    setup_logging("ERROR", secrets_of(settings))
    print("hik2mqtt check: configuration ok")
    report = run_checks(settings)
    print("\n".join(report.lines))
    if report.problems:
        print(f"{report.problems} problem(s) to fix.")
        return EXIT_FAILURE
    print("All good.")
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when the running bridge is connected to the broker and every camera."""
    path = args.file
    if path is None:
        settings = _load(args.env_file, require_cameras=False)
        path = settings.health_file
    if path is None:
        print("hik2mqtt health: set HIK2MQTT_HEALTH_FILE (or --file)", file=sys.stderr)
        return EXIT_CONFIG
    problems = health_problems(path, max_age=args.max_age)
    print("; ".join(problems) if problems else "healthy")
    return EXIT_FAILURE if problems else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hik2mqtt", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hik2mqtt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the bridge (settings from HIK2MQTT_* and .env)")
    run.add_argument("--env-file", type=Path, help="read settings from this file (default: ./.env)")
    run.set_defaults(func=cmd_run)

    sim = sub.add_parser("simulate", help="serve a fake ANPR camera on this machine")
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    sim.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    sim.add_argument("--username", default="admin", help="user name (admin)")
    sim.add_argument("--password", default="simulator", help="password (simulator)")
    sim.add_argument("--interval", type=float, default=5.0, help="seconds between reads (5)")
    sim.add_argument("--heartbeat", type=float, default=10.0, help="seconds between heartbeats")
    sim.add_argument("--picture-size", type=int, default=0, help="pad pictures to this many bytes")
    sim.add_argument("-v", "--verbose", action="store_true", help="log every request")
    sim.set_defaults(func=cmd_simulate)

    check = sub.add_parser("check", help="try the settings against the broker and cameras")
    check.add_argument("--env-file", type=Path, help="settings file (default: ./.env)")
    check.set_defaults(func=cmd_check)

    health = sub.add_parser("health", help="exit 0 if the running bridge is healthy (HEALTHCHECK)")
    health.add_argument("--file", type=Path, help="health file (default: HIK2MQTT_HEALTH_FILE)")
    health.add_argument("--env-file", type=Path, help="settings file (default: ./.env)")
    health.add_argument("--max-age", type=float, default=30.0, help="stale after seconds (30)")
    health.set_defaults(func=cmd_health)

    demo = sub.add_parser(
        "demo",
        help="simulator + bridge + print what reaches the broker (starts one if there is none)",
    )
    demo.add_argument(
        "--broker",
        type=_broker_address,
        metavar="HOST[:PORT]",
        help="use this MQTT broker (default: HIK2MQTT_MQTT__*, else localhost:1883, "
        "else an embedded one)",
    )
    demo.add_argument(
        "--env-file", type=Path, help="settings file (default: none; ./.env is ignored)"
    )
    demo.add_argument("--interval", type=float, default=3.0, help="seconds between reads (3)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"hik2mqtt: configuration: {escape(line)}", file=sys.stderr)
        return EXIT_CONFIG
    return code


if __name__ == "__main__":
    sys.exit(main())
