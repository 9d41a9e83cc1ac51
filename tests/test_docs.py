"""The README and config.example.env stay true to the code."""

from __future__ import annotations

import inspect
import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from hik2mqtt.config import Settings, setting_rows
from hik2mqtt.events import PlateRead, decode
from hik2mqtt.pipeline import Pipeline, Publish, ReadIn
from hik2mqtt.reads import ReadArrived
from hik2mqtt.simulator.encoders import make_read
from hik2mqtt.topics import Topics

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
EXAMPLE = (ROOT / "config.example.env").read_text()


def test_every_setting_is_in_the_readme_table() -> None:
    """Each setting has a row in the README's settings table, and no row names a setting
    that doesn't exist."""
    variables = {name for name, _, _ in setting_rows()}
    rows = set(re.findall(r"^\| `(HIK2MQTT_[A-Z_<>]+)` \|", README, re.M))
    assert rows == variables


def test_every_setting_is_in_config_example_env() -> None:
    """config.example.env lists every setting (as GATE for <NAME>), and each line it sets
    or shows loads as a valid setting."""
    names = set(re.findall(r"^#?(HIK2MQTT_[A-Z_]+)=", EXAMPLE, re.M))
    expected = {name.replace("<NAME>", "GATE") for name, _, _ in setting_rows()}
    assert names == expected
    values = dict(re.findall(r"^#?(HIK2MQTT_[A-Z_]+)=(.*)$", EXAMPLE, re.M))
    data: dict[str, Any] = {}
    for name, value in values.items():
        keys = name.removeprefix("HIK2MQTT_").lower().split("__")
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    Settings.model_validate(data)


def _topic_builders(topics: Topics) -> dict[str, str]:
    """Every topic name Topics builds, with placeholders as the README writes them."""
    placeholders = {
        "camera": "<camera>",
        "kind": "<kind>",
        "event_type": "<type>",
        "list_name": "<list>",
    }
    built: dict[str, str] = {}
    for name in dir(Topics):
        skip = (
            "prefix",
            "bridge_id",
            "parse_command",
            "parse_list_command",
            "camera_of_trigger",
            "parse_bridge_topic",
        )
        if name.startswith("_") or name in skip or name == "may_answer_on":
            continue
        member = getattr(Topics, name)
        if isinstance(member, property):
            value = getattr(topics, name)
            if isinstance(value, str):
                built[name] = value
            continue
        params = list(inspect.signature(member).parameters)
        if name == "result":
            built[name] = topics.result("<command topic>")
            continue
        args = [placeholders.get(p, "<n>") for p in params if p != "self"]
        built[name] = getattr(topics, name)(*args)
    return built


def test_every_topic_builder_is_in_the_readme() -> None:
    """Each topic Topics can build (every property and method) has a row in the README's
    topic table, with the same placeholders."""
    built = _topic_builders(Topics("anpr"))
    assert len(built) >= 12
    with_id = _topic_builders(Topics("anpr", "<id>"))
    built.update({f"{name} with an id": topic for name, topic in with_id.items()})
    for name, topic in built.items():
        assert f"| `{topic}` |" in README or f"`{topic}`" in README, (name, topic)


def _published(settings: Settings, *inputs: Any) -> dict[str, bytes]:
    pipeline = Pipeline(settings=settings, topics=Topics("anpr"))
    out: dict[str, bytes] = {}
    for item in inputs:
        for effect in pipeline.handle(item):
            if isinstance(effect, Publish):
                out[effect.topic] = effect.payload
    return out


def _readme_table_fields(heading: str) -> set[str]:
    section = README.split(heading, 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))


def test_every_payload_field_is_in_the_readme() -> None:
    """The fields of a read as the bridge publishes it (through the pipeline, with lists and
    the gate rule on) are exactly the README's field table and its example; the outcome,
    gate and event payloads' fields are documented too."""
    settings = Settings(cameras={"gate": {"host": "h", "password": "p", "gate": {"enabled": True}}})
    read = decode(make_read("AB12CDE").xml)
    assert isinstance(read, PlateRead)
    received = datetime.now().astimezone()
    arrived = ReadArrived(read=read, received=received, kinds=("plate",))
    out = _published(settings, ReadIn("gate", "stream", arrived))
    payload = json.loads(out["anpr/gate/plate"])
    fields = _readme_table_fields("### A read: `anpr/<camera>/plate`")
    assert set(payload) == fields
    example = README.split("### A read: `anpr/<camera>/plate`", 1)[1].split("```json", 1)[1]
    assert set(json.loads(example.split("```", 1)[0])) == fields
    gate = json.loads(out["anpr/gate/gate"])
    gate_fields = '","'.join(gate)
    assert '`{"' + gate_fields + '"}`' in README
    outcome = _readme_table_fields("### A command's outcome: `<command topic>/result`")
    assert {"ok", "status", "message", "plate", "sub_status", "state"} <= outcome


def test_readme_quick_start_and_test_command_match_ci() -> None:
    """The README's test command is the one .ci/run runs."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in README
    assert "python -m pytest" in ci
    assert "hik2mqtt demo" in README


def test_node_red_flow_uses_only_documented_topics() -> None:
    """The example Node-RED flow subscribes only to topics the bridge publishes and
    publishes only to topics it subscribes to, as the README's topic table says."""
    rows = re.findall(r"^\| `(anpr/[^`]+)` \| (published|subscribed) \|", README, re.M)
    table = [(re.compile(re.sub(r"<[^>]+>", "[^/]+", topic) + "$"), way) for topic, way in rows]
    flow = json.loads((ROOT / "examples" / "node-red" / "gate-flow.json").read_text())
    used = [(n["topic"], n["type"]) for n in flow if n["type"] in ("mqtt in", "mqtt out")]
    assert {kind for _, kind in used} == {"mqtt in", "mqtt out"}
    for topic, kind in used:
        wanted = "published" if kind == "mqtt in" else "subscribed"
        assert any(rx.match(topic) and way == wanted for rx, way in table), (topic, kind)
    broker_ids = {n["id"] for n in flow if n["type"] == "mqtt-broker"}
    assert all(n["broker"] in broker_ids for n in flow if n["type"] in ("mqtt in", "mqtt out"))


def test_config_example_env_loads_as_a_dotenv_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """config.example.env, copied to .env as the README says, loads as it is (its
    COMPOSE_PROFILES line is docker compose's, not a bad setting)."""
    from hik2mqtt.config import load_settings

    for key in list(os.environ):
        if key.startswith("HIK2MQTT_"):
            monkeypatch.delenv(key)
    settings = load_settings(ROOT / "config.example.env")
    assert list(settings.cameras) == ["gate"]
    assert settings.mqtt.host == "mosquitto"


def test_every_test_reliability_names_exists_where_it_says() -> None:
    """docs/RELIABILITY.md credits its promises to tests: each named test exists, in the
    file named before it (``file.py::test``, then ``::test`` for more in the same file)."""
    defined: dict[str, set[str]] = {}
    for path in (ROOT / "tests").glob("test_*.py"):
        for name in re.findall(r"^(?:async )?def (test_\w+)\(", path.read_text(), re.M):
            defined.setdefault(name, set()).add(path.name)
    text = (ROOT / "docs" / "RELIABILITY.md").read_text()
    wrong = []
    for line in text.splitlines():
        current: str | None = None
        for file, name in re.findall(r"`(?:(test_\w+\.py)?::)?(test_\w+)`", line):
            current = file or current
            where = defined.get(name, set())
            if not where or (current is not None and current not in where):
                wrong.append(f"{current or ''}::{name}")
    assert wrong == []


def test_architecture_names_every_module_and_only_modules_that_exist() -> None:
    """docs/ARCHITECTURE.md's file table stays true: each file it names exists under
    hik2mqtt/, and each module of the package is named there (a sub-package's files in
    its row, as ``simulator/``'s are)."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table = text.split("## The files", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    named = {t for line in rows for t in re.findall(r"`([\w/.]+)`", line.split("|")[1])}
    package = ROOT / "hik2mqtt"
    for name in named:
        assert (package / name).exists(), f"ARCHITECTURE.md names {name}, which is not there"
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        folder = rel.rsplit("/", 1)[0] + "/" if "/" in rel else None
        in_row = folder is not None and any(
            f"`{folder}`" in line and f"`{path.name}`" in line for line in rows
        )
        by_folder = folder is not None and path.name == "__init__.py" and folder in named
        assert rel in named or in_row or by_folder, f"ARCHITECTURE.md does not name {rel}"
