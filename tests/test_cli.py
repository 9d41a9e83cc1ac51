"""The `hik2mqtt` command as a user runs it: a real process, real signals, real logs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from hik2mqtt.simulator import Simulator
from tests.conftest import Broker, ExternalBroker, Subscribe, process_env, wait_until


def hik2mqtt(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hik2mqtt", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_bad_configuration_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    """Bad settings stop the bridge before it connects anywhere, one line per variable."""
    env = process_env(
        HIK2MQTT_MQTT__PORT="not-a-port",
        HIK2MQTT_CAMERAS__GATE__HOST="10.0.0.9",
        HIK2MQTT_CAMERAS__GATE__PASSWORD="pw-secret-1",
        HIK2MQTT_CAMERAS__GATE__CHANEL="2",
        HIK2MQTT_CAMERAS__YARD__HOST="10.0.0.10",
        HIK2MQTT_TOPIC_PREFIX="a/#",
        HIK2MQTT_LOGLEVEL="DEBUG",
    )
    proc = hik2mqtt("run", env=env, cwd=tmp_path)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    lines = err.strip().splitlines()
    assert sorted(lines) == sorted(
        [
            "hik2mqtt: configuration: HIK2MQTT_LOGLEVEL: unknown setting",
            "hik2mqtt: configuration: HIK2MQTT_MQTT__PORT: Input should be a valid integer, "
            "unable to parse string as an integer (got 'not-a-port')",
            "hik2mqtt: configuration: HIK2MQTT_CAMERAS__GATE__CHANEL: unknown setting",
            "hik2mqtt: configuration: HIK2MQTT_CAMERAS__YARD__PASSWORD: required, not set",
        ]
    ), err
    assert "pw-secret-1" not in out + err


def test_camera_names_equal_once_lower_cased_are_a_configuration_error(tmp_path: Path) -> None:
    """Cameras GATE and gate (two hosts, one topic level) exit 2 with one line naming a
    variable of each, from the environment and from the .env file alike; nothing merged."""
    env = process_env(
        HIK2MQTT_CAMERAS__GATE__HOST="10.0.0.9",
        HIK2MQTT_CAMERAS__GATE__PASSWORD="pw-secret-1",
        HIK2MQTT_CAMERAS__gate__HOST="10.0.0.10",
        HIK2MQTT_CAMERAS__gate__PASSWORD="pw-secret-2",
        HIK2MQTT_CAMERAS__YARD__HOST="10.0.0.11",
        HIK2MQTT_CAMERAS__YARD__PASSWORD="pw-secret-3",
    )
    proc = hik2mqtt("run", env=env, cwd=tmp_path)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.strip().splitlines() == [
        "hik2mqtt: configuration: HIK2MQTT_CAMERAS__GATE__HOST and HIK2MQTT_CAMERAS__gate__HOST: "
        "cameras 'GATE', 'gate' are one name once lower-cased (the topic level 'gate'); "
        "rename one of them"
    ], err
    assert "pw-secret" not in out + err
    env_file = tmp_path / "site.env"
    env_file.write_text(
        "HIK2MQTT_CAMERAS__Door__HOST=a\nHIK2MQTT_CAMERAS__Door__PASSWORD=p\n"
        "HIK2MQTT_CAMERAS__DOOR__HOST=b\nHIK2MQTT_CAMERAS__DOOR__PASSWORD=q\n"
    )
    proc = hik2mqtt("run", "--env-file", str(env_file), env=process_env(), cwd=tmp_path)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.strip().splitlines() == [
        "hik2mqtt: configuration: HIK2MQTT_CAMERAS__DOOR__HOST and HIK2MQTT_CAMERAS__Door__HOST: "
        "cameras 'DOOR', 'Door' are one name once lower-cased (the topic level 'door'); "
        "rename one of them"
    ], err


def test_no_camera_is_a_configuration_error(tmp_path: Path) -> None:
    """Running with no camera configured says which variables to set."""
    proc = hik2mqtt("run", env=process_env(), cwd=tmp_path)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "HIK2MQTT_CAMERAS: no camera configured" in err


def test_env_file_and_topic_prefix_checks(tmp_path: Path) -> None:
    """Settings come from --env-file too; a missing file and a bad prefix are reported."""
    proc = hik2mqtt(
        "run", "--env-file", str(tmp_path / "missing.env"), env=process_env(), cwd=tmp_path
    )
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "--env-file: no such file" in err
    env_file = tmp_path / "site.env"
    env_file.write_text(
        "HIK2MQTT_TOPIC_PREFIX=a/+/b\nHIK2MQTT_CAMERAS__GATE__HOST=x\nHIK2MQTT_CAMERAS__GATE__PASSWORD=p\n"
    )
    proc = hik2mqtt("run", "--env-file", str(env_file), env=process_env(), cwd=tmp_path)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.strip().splitlines() == [
        "hik2mqtt: configuration: HIK2MQTT_TOPIC_PREFIX: must be a non-empty topic without +, # "
        "or a leading/trailing / (got 'a/+/b')"
    ]


def test_run_sigterm_publishes_offline_and_exits_0_without_leaking_secrets(
    broker: Broker | ExternalBroker, prefix: str, subscribe: Subscribe, tmp_path: Path
) -> None:
    """`hik2mqtt run` delivers reads and triggers, and on SIGTERM publishes offline and
    exits 0 within 5 s; its DEBUG log never holds the camera password."""
    secret = "cam-Pa55-wörd-7731"
    sub = subscribe(f"{prefix}/#")
    with Simulator(heartbeat=0.2, password=secret) as sim:
        env = process_env(broker, prefix, {"gate": sim}, HIK2MQTT_LOG_LEVEL="DEBUG")
        proc = hik2mqtt("run", env=env, cwd=tmp_path)
        try:
            sub.wait_for(f"{prefix}/gate/status", timeout=20)
            sim.emit_read("CLI 1")
            sub.wait_for(f"{prefix}/gate/plate")
            sub.publish(f"{prefix}/gate/trigger", "")
            sub.wait_for(f"{prefix}/gate/trigger/result")
            time_sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=10)
            assert time.monotonic() - time_sent < 5
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert json.loads(sub.payloads(f"{prefix}/gate/plate")[0])["plate"] == "CLI 1"
    wait_until(lambda: sub.payloads(f"{prefix}/bridge/status")[-1:] == [b"offline"])
    assert sub.payloads(f"{prefix}/gate/status")[-1] == b"offline"
    assert "DEBUG" in err  # the log really was at DEBUG level
    assert secret not in out + err
    assert "**********" not in err  # and nothing even needed redacting


def test_redacting_formatter_hides_secrets() -> None:
    """The last line of defence replaces a configured secret anywhere in a log line."""
    import logging

    from hik2mqtt.cli import RedactingFormatter

    formatter = RedactingFormatter("%(message)s", ["s3cr3t", ""])
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "url http://u:%s@h/", ("s3cr3t",), None
    )
    assert formatter.format(record) == "url http://u:**********@h/"


def test_json_log_lines_for_log_shippers(tmp_path: Path) -> None:
    """HIK2MQTT_LOG_FORMAT=json makes each log line one JSON object, secrets redacted."""
    with Simulator(heartbeat=None, password="json-secret-9") as sim:
        env = process_env(
            None,
            None,
            {"cam": sim},
            HIK2MQTT_MQTT__PORT="1",  # no broker there: the bridge logs and keeps trying
            HIK2MQTT_LOG_FORMAT="json",
            HIK2MQTT_LOG_LEVEL="DEBUG",
        )
        proc = hik2mqtt("run", env=env, cwd=tmp_path)
        try:
            assert sim.wait_for_streams(1, timeout=20)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=10)
    lines = [json.loads(line) for line in err.strip().splitlines()]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    assert any("event stream open" in line["message"] for line in lines)
    assert "json-secret-9" not in err


def test_health_follows_the_bridges_real_state(
    broker: Broker | ExternalBroker, prefix: str, tmp_path: Path
) -> None:
    """`hik2mqtt health` exits 0 while the bridge has the broker and every camera, and 1
    with the reason when a camera is gone, the bridge has stopped (at once, not after
    --max-age) or it stopped writing its state."""
    from hik2mqtt.bridge import Bridge
    from tests.conftest import bridge_settings, camera_config

    health = tmp_path / "health.json"
    sim = Simulator(heartbeat=None).start()
    bridge = Bridge(
        settings=bridge_settings(
            broker, prefix, {"cam": camera_config(sim)}, health_file=str(health)
        )
    )
    bridge.start()

    def check(*extra: str) -> tuple[int, str]:
        proc = hik2mqtt("health", "--file", str(health), *extra, env=process_env(), cwd=tmp_path)
        out, _ = proc.communicate(timeout=30)
        return proc.returncode, out.strip()

    try:
        wait_until(lambda: check() == (0, "healthy"), timeout=20)
        sim.stop()
        wait_until(lambda: check() == (1, "camera cam is offline"), timeout=20)
    finally:
        bridge.stop()
    assert check("--max-age", "3600") == (1, "the bridge has stopped")
    health.write_text(json.dumps({"time": 0, "broker": True, "cameras": {"cam": "online"}}))
    code, out = check("--max-age", "30")
    assert code == 1
    assert "last wrote its state" in out


def test_check_reports_each_problem_and_what_to_fix(
    broker: Broker | ExternalBroker, tmp_path: Path
) -> None:
    """`hik2mqtt check` connects to the broker and logs in to each camera once, says what
    works, names what to fix (a refused login, a camera that doesn't notify the
    surveillance center) and exits 1; with everything right it exits 0."""
    with Simulator(heartbeat=None) as good, Simulator(heartbeat=None) as quiet:
        quiet.notify_center = False
        env = process_env(
            broker,
            None,
            {"good": good, "quiet": quiet, "locked": good},
            HIK2MQTT_CAMERAS__LOCKED__PASSWORD="wrong-password-1",
        )
        proc = hik2mqtt("check", env=env, cwd=tmp_path)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, out + err
        assert f"ok    broker {broker.host}:{broker.port}: connected" in out
        assert f"ok    camera good ({good.url}): SIM-ANPR, firmware V0.1.0 build 261125" in out
        assert "FAIL  camera quiet: its vehicle detection event does not notify" in out
        assert "FAIL  camera locked" in out
        assert "HIK2MQTT_CAMERAS__LOCKED__USERNAME" in out
        assert "2 problem(s) to fix." in out
        assert "wrong-password-1" not in out + err
        assert good.failed_logins == 1  # one attempt, never a retry
        del env["HIK2MQTT_CAMERAS__LOCKED__HOST"], env["HIK2MQTT_CAMERAS__LOCKED__PORT"]
        del env["HIK2MQTT_CAMERAS__LOCKED__PASSWORD"], env["HIK2MQTT_CAMERAS__QUIET__HOST"]
        del env["HIK2MQTT_CAMERAS__QUIET__PORT"], env["HIK2MQTT_CAMERAS__QUIET__PASSWORD"]
        proc = hik2mqtt("check", env=env, cwd=tmp_path)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert out.strip().endswith("All good.")
