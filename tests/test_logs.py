"""Log lines: camera text cannot forge a line or break the JSON format, and secrets are masked
where they stand as values (and as whole tokens when strong), never as every substring."""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
from pathlib import Path

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from hik2mqtt.cli import RedactingFormatter
from hik2mqtt.logsafe import MASK, escape, redact_push_path, redact_url
from hik2mqtt.simulator import Simulator, make_read
from tests.conftest import AnyBroker, Subscribe, free_port, process_env, wait_until
from tests.test_cli import hik2mqtt

LINE_START = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL)"
)
FORGERIES = [
    "AB12\n2026-01-01 00:00:00,000 INFO    hik2mqtt.gate: gate opened",
    "AB12\r2026-01-01 00:00:00,000 INFO    forged",
    "\x1b[2K\x1b[1Gforged over the line",
    "AB\x9b31mC1 CSI",
    "AB\u2028line separator\u2029paragraph\x85NEL",
    "AB\u202eRTL override\u2066",
    "lone \ud800 surrogate",
    "NUL \x00 and BEL \x07 and DEL \x7f",
]


def record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("hik2mqtt.test", logging.WARNING, __file__, 1, message, args, exc_info)


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


@pytest.mark.parametrize("text", FORGERIES)
def test_camera_text_stays_on_one_safe_line(text: str) -> None:
    """A message holding camera text with line breaks, ANSI/C1 escapes, separators, bidi
    overrides or lone surrogates formats as one line that encodes as UTF-8."""
    formatter = RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", [])
    line = formatter.format(record("camera gate: plate %s", text))
    assert len(line.splitlines()) == 1
    assert not re.search(
        "[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]", line
    )
    line.encode("utf-8")  # no lone surrogate left


@pytest.mark.parametrize("text", FORGERIES)
def test_a_traceback_keeps_its_lines_and_escapes_the_message(text: str) -> None:
    """A traceback stays a block of lines, but an exception message with camera text cannot
    add a line of its own (nor can a chained cause's)."""
    formatter = RedactingFormatter("%(levelname)s %(message)s", [])
    try:
        try:
            raise ValueError(f"cause {text}")
        except ValueError as cause:
            raise RuntimeError(f"bad part: {text}") from cause
    except RuntimeError as exc:
        caught = exc
    lines = formatter.format(record("camera gate: error", exc=caught)).split("\n")
    assert lines[0] == "WARNING camera gate: error"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1].startswith("RuntimeError: bad part: ")
    assert sum(line.startswith("ValueError: cause ") for line in lines) == 1
    assert not any("forged" in line and not line.startswith(("Runtime", "Value")) for line in lines)
    assert "The above exception was the direct cause" in "\n".join(lines)


@pytest.mark.parametrize("text", FORGERIES)
def test_json_lines_stay_one_valid_json_object(text: str) -> None:
    """With the JSON format, camera text and tracebacks still give one valid JSON object
    per line, encodable as UTF-8."""
    formatter = RedactingFormatter("%(message)s", [], json=True)
    line = formatter.format(record("plate %s", text, exc=raised(ValueError(text))))
    assert len(line.splitlines()) == 1
    doc = json.loads(line)
    assert doc["message"].startswith("plate ")
    assert doc["traceback"].startswith("Traceback")
    line.encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_escape_always_gives_one_encodable_line(text: str) -> None:
    """Whatever the text, escape() gives one line without control characters, as UTF-8."""
    out = escape(text)
    assert len(out.splitlines()) <= 1
    out.encode("utf-8")
    assert escape(out) == out  # escaping twice changes nothing


def test_values_in_secret_positions_are_masked_configured_or_not() -> None:
    """Passwords in URLs, key=value pairs, Authorization headers and the push path are masked
    whatever their value."""
    formatter = RedactingFormatter("%(message)s", [])
    cases = {
        "url http://admin:hunter2@cam/ISAPI": f"url http://admin:{MASK}@cam/ISAPI",
        "HIK2MQTT_CAMERAS__GATE__PASSWORD=hunter2 next": (
            f"HIK2MQTT_CAMERAS__GATE__PASSWORD={MASK} next"
        ),
        '{"password": "hunter2", "user": "admin"}': f'{{"password": "{MASK}", "user": "admin"}}',
        "headers {'Authorization': 'Basic YWRtaW46aHVudGVyMg=='}": (
            f"headers {{'Authorization': '{MASK}"
        ),
        "POST /hik2mqtt/gate/hunter2?x HTTP/1.1": f"POST /hik2mqtt/gate/{MASK}?x HTTP/1.1",
        "push_secret: hunter2": f"push_secret: {MASK}",
    }
    for given_text, expected in cases.items():
        assert formatter.format(record("%s", given_text)) == expected
    assert redact_url("https://u:p%40ss@h:443/x?token=abc&y=1") == (
        f"https://u:{MASK}@h:443/x?token={MASK}&y=1"
    )
    assert redact_push_path("/hik2mqtt/gate/s/e/c") == f"/hik2mqtt/gate/{MASK}"


def _raise_from(path: str, message: str) -> BaseException:
    """An exception raised by code whose file is ``path`` (a traceback frame names it)."""
    namespace: dict[str, object] = {}
    exec(compile(f"def boom():\n    raise RuntimeError({message!r})\n", path, "exec"), namespace)
    try:
        namespace["boom"]()  # type: ignore[operator]
    except RuntimeError as exc:
        return exc
    raise AssertionError("boom() did not raise")


@pytest.mark.parametrize(
    "path",
    [
        "/opt/hik2mqtt/lib/hik2mqtt/web/app.py",
        "/hik2mqtt/web/app.py",
        "/x/hik2mqtt/hik2mqtt/web/a.py",
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_a_traceback_from_a_file_under_hik2mqtt_web_stays_intact(path: str, as_json: bool) -> None:
    """A traceback whose frame is a file under ``.../hik2mqtt/web/`` keeps its file path (it is
    no push path), each JSON line parses, and the secrets in the message and the exception's
    text (a URL's password, a push secret in a request line and in a URL) are still masked."""
    secret, password = "Push-Secret-4471", "Cam-Pa55-2210"
    formatter = RedactingFormatter("%(levelname)s %(message)s", [secret, password], json=as_json)
    exc = _raise_from(
        path, f"GET /hik2mqtt/gate/{secret}/x HTTP/1.1 from http://admin:{password}@cam/ISAPI"
    )
    line = formatter.format(
        record("push %s failed", f"http://127.0.0.1:8080/hik2mqtt/gate/{secret}", exc=exc)
    )
    if as_json:
        assert len(line.splitlines()) == 1
        doc = json.loads(line)
        message, trace = doc["message"], doc["traceback"]
    else:
        message, _, trace = line.partition("\n")
    assert f'File "{path}", line 2, in boom' in trace
    assert message.endswith(f"push http://127.0.0.1:8080/hik2mqtt/gate/{MASK} failed")
    assert trace.endswith(f"GET /hik2mqtt/gate/{MASK} HTTP/1.1 from http://admin:{MASK}@cam/ISAPI")
    assert secret not in line
    assert password not in line


def test_strong_secrets_are_masked_as_whole_tokens_and_words_are_left_alone() -> None:
    """A strong configured secret is masked wherever it stands as a token, not inside a longer
    token; a word-like secret such as ``simulator`` blanks no ordinary word."""
    formatter = RedactingFormatter("%(message)s", ["cam-Pa55-7731", "simulator", "x", ""])
    assert formatter.format(record("leaked cam-Pa55-7731, again")) == f"leaked {MASK}, again"
    assert formatter.format(record("id xcam-Pa55-77310")) == "id xcam-Pa55-77310"
    line = formatter.format(record("camera simulator on http://127.0.0.1:8000 (user admin)"))
    assert line == "camera simulator on http://127.0.0.1:8000 (user admin)"
    assert formatter.format(record("http://admin:simulator@h/")) == f"http://admin:{MASK}@h/"
    assert formatter.format(record("a box 640x480")) == "a box 640x480"


def test_masking_is_linear_on_hostile_lines() -> None:
    """Masking patterns do no backtracking work: a 10x longer hostile line costs about 10x
    (counted as the ratio of two runs of the same formatter)."""
    import time

    formatter = RedactingFormatter("%(message)s", ["cam-Pa55-7731"])

    def cost(n: int) -> float:
        text = "a" * n + "://" + "b:" * n + "password" * n + "/hik2mqtt/" * n
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            formatter.format(record("%s", text))
            best = min(best, time.perf_counter() - started)
        return best

    small, large = cost(10_000), cost(100_000)
    assert large / small < 40  # quadratic would be ~100


def test_debug_log_of_a_real_bridge_holds_no_secret_and_no_forged_line(
    broker: AnyBroker, prefix: str, subscribe: Subscribe, tmp_path: Path
) -> None:
    """`hik2mqtt run` at DEBUG with a push camera and a stream camera: a push, a push with a
    wrong secret, garbage with escapes and line breaks in its request line; stderr never
    holds the push secret or the password, and every line is a log line or a traceback."""
    push_secret = "Push-Secret-8812"
    password = "Cam-Pa55-9913"
    port = free_port()
    sub = subscribe(f"{prefix}/#")
    with Simulator(heartbeat=0.5, password=password) as sim:
        env = process_env(
            broker,
            prefix,
            {"gate": sim},
            HIK2MQTT_LOG_LEVEL="DEBUG",
            HIK2MQTT_LISTEN__HOST="127.0.0.1",
            HIK2MQTT_LISTEN__PORT=str(port),
            HIK2MQTT_CAMERAS__DOOR__HOST="127.0.0.1",
            HIK2MQTT_CAMERAS__DOOR__MODE="push",
            HIK2MQTT_CAMERAS__DOOR__PASSWORD=password,
            HIK2MQTT_CAMERAS__DOOR__PUSH_SECRET=push_secret,
        )
        proc = hik2mqtt("run", env=env, cwd=tmp_path)
        try:
            sub.wait_for(f"{prefix}/gate/status", timeout=20)
            base = f"http://127.0.0.1:{port}/hik2mqtt/door"
            assert sim.push(f"{base}/{push_secret}", make_read("DOOR 1")) == 200
            assert sim.push(f"{base}/{push_secret}x", make_read("DOOR 2")) == 403
            assert sim.push(f"{base.upper()}/{push_secret}", make_read("DOOR 3")) == 403
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                raw.sendall(
                    f"POST /hik2mqtt/\x1b[31mdoor\x0b/{push_secret} HTTP/1.1\r\n"
                    "X: \r\n2026-01-01 00:00:00,000 INFO forged\r\n\r\n".encode("latin-1")
                )
                raw.recv(65536)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                raw.sendall(f"POST /hik2mqtt/door/{push_secret} HTTP/9.9\r\n\r\n".encode())
                raw.recv(65536)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                raw.sendall(b"POST /hik2mqtt/\x1b[31mevil\x07/x HTTP/1.1\r\n\r\n")
                raw.recv(65536)  # (h11 refuses control characters in the request line)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                raw.sendall(b"POST /hik2mqtt/%1b[31mevil'\"/x HTTP/1.1\r\nHost: x\r\n\r\n")
                raw.recv(65536)  # a name h11 lets through: logged escaped
            sub.wait_for(f"{prefix}/door/plate")
            assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 405
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "DEBUG" in err
    assert push_secret not in out + err
    assert password not in out + err
    assert "\x1b" not in err
    assert "no push camera named" in err  # the escaped name was logged
    in_traceback = False
    for line in err.splitlines():
        assert not line.startswith("2026-01-01"), line  # the forged time stamp
        if LINE_START.match(line):
            in_traceback = False
            continue
        if line.startswith("Traceback"):
            in_traceback = True
        assert in_traceback, f"a line that is neither a log line nor a traceback: {line!r}"


def test_simulate_logs_its_word_like_password_as_a_word(tmp_path: Path) -> None:
    """`hik2mqtt simulate` with the password ``simulator`` still says "camera simulator"."""
    port = free_port()
    proc = hik2mqtt(
        "simulate", "--port", str(port), "--password", "simulator", env=process_env(), cwd=tmp_path
    )
    try:
        wait_until(lambda: _accepts(port), timeout=20)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert "camera simulator on http://" in err
    assert MASK not in err


def _accepts(port: int) -> bool:
    """The simulator answers HTTP (so it is serving, its signal handlers set)."""
    try:
        requests.get(f"http://127.0.0.1:{port}/", timeout=1)
    except requests.RequestException:
        return False
    return True


def test_a_non_utf8_env_file_is_a_configuration_error(tmp_path: Path) -> None:
    """An .env that is not UTF-8 makes `hik2mqtt run` exit 2 with one configuration line
    naming the file and the line, no traceback."""
    (tmp_path / ".env").write_bytes(
        b"HIK2MQTT_CAMERAS__GATE__HOST=cam\nHIK2MQTT_CAMERAS__GATE__PASSWORD=caf\xe9\n"
    )
    proc = hik2mqtt("run", env=process_env(), cwd=tmp_path)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert err.splitlines() == [
        "hik2mqtt: configuration: .env: line 2 is not UTF-8 text; save the file as UTF-8"
    ]
    assert out == ""


def test_a_nested_setting_that_is_not_json_is_a_configuration_error(tmp_path: Path) -> None:
    """A nested setting given whole as broken JSON exits 2 with one line naming it."""
    proc = hik2mqtt("run", env=process_env(HIK2MQTT_CAMERAS="{bad"), cwd=tmp_path)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert err.splitlines() == [
        "hik2mqtt: configuration: HIK2MQTT_CAMERAS: not valid JSON; set its parts instead "
        "(HIK2MQTT_CAMERAS__<PART>)"
    ]
