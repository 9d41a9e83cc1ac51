"""The broker's side is hostile input too: registries, topics, response topics, commands
and Home Assistant's status from whoever can publish on the broker; real Mosquitto, real
sockets, the simulator."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hik2mqtt.bridge import Bridge
from hik2mqtt.config import MqttSettings
from hik2mqtt.core.untrusted import (
    MAX_NAME,
    MAX_REGISTRY_NAMES,
    name_problem,
    registry_names,
    topic_problem,
)
from hik2mqtt.mqtt import Incoming, MqttLink
from hik2mqtt.pipeline import (
    MAX_REMOVALS,
    Effect,
    Later,
    MessageIn,
    Publish,
    RemoveNext,
)
from hik2mqtt.simulator import Simulator
from tests.conftest import (
    AnyBroker,
    Stand_in,
    Subscribe,
    bridge_settings,
    camera_config,
    wait_until,
)
from tests.test_pipeline import make_pipeline

FORGED = ["nul\u0000x", "+", "#", "a/b", "$SYS", "bridge", " ", "x" * (MAX_NAME + 1), 7, None]


def forged_registry(extra: int = 10_000) -> bytes:
    """A registry with NUL, wildcard and other bad names, then ``extra`` good-looking ones."""
    return json.dumps([*FORGED, *(f"old{i}" for i in range(extra))]).encode()


def drain(pipeline: Any, effects: list[Effect]) -> list[Effect]:
    """``effects`` and those of every RemoveNext they schedule, in order (time skipped)."""
    out = list(effects)
    pending = [e for e in effects if isinstance(e, Later) and isinstance(e.input, RemoveNext)]
    while pending:
        pending.pop(0)
        more = pipeline.handle(RemoveNext())
        out += more
        pending += [e for e in more if isinstance(e, Later) and isinstance(e.input, RemoveNext)]
    return out


# -- the one name rule ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gate", "back-1", "caméra_2", "x" * MAX_NAME])
def test_good_camera_names(name: str) -> None:
    """Ordinary names, accented letters and names of 64 characters pass the rule."""
    assert name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * (MAX_NAME + 1),
        "a/b",
        "a+",
        "a#",
        "$SYS",
        "a b",
        "a\x00",
        "a\x7f",
        "a\u0085",
        "a\ufffe",
        "a\U0010ffff",
        "a\ud800",
        "bridge",
        "Bridge",
    ],
)
def test_bad_camera_names(name: str) -> None:
    """Empty, over-long, topic-special, control, non-character, `$` and reserved names fail."""
    assert name_problem(name) is not None


def test_config_uses_the_same_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """A configured camera named `$gate` is refused at start, with the rule's reason."""
    from hik2mqtt.config import load_settings
    from hik2mqtt.errors import ConfigError

    monkeypatch.setenv("HIK2MQTT_CAMERAS__$GATE__HOST", "x")
    monkeypatch.setenv("HIK2MQTT_CAMERAS__$GATE__PASSWORD", "y")
    with pytest.raises(ConfigError, match=r"CAMERAS__\$GATE: a camera name must not start with \$"):
        load_settings()


def test_registry_names_are_checked_counted_and_capped() -> None:
    """Bad entries are left out and counted; at most MAX_REGISTRY_NAMES names are taken."""
    names, skipped = registry_names(forged_registry())
    assert names == [f"old{i}" for i in range(MAX_REGISTRY_NAMES)]
    assert skipped == len(FORGED) + 10_000 - MAX_REGISTRY_NAMES
    assert registry_names(b"[" * 100_000) == ([], 1)
    assert registry_names(b'["a", "a"]') == (["a"], 0)


@pytest.mark.parametrize(
    ("topic", "ok"),
    [
        ("anpr/gate/plate", True),
        ("a/é/😀", True),
        ("", False),
        ("a/+", False),
        ("a/#", False),
        ("a/\x00", False),
        ("a/\x1b", False),
        ("a/\ufdd0", False),
        ("a/\ud800", False),
        ("a" * 65_536, False),
    ],
)
def test_topic_rule(topic: str, ok: bool) -> None:
    """Topics with wildcards, NUL, controls, non-characters or over 65,535 bytes fail."""
    assert (topic_problem(topic) is None) is ok


# -- the forged registry, in the pipeline -----------------------------------------------


def test_forged_registry_costs_bounded_paced_work() -> None:
    """A retained registry of NUL, wildcard and 10,000 names: one warning for the bad ones,
    one for the surplus, at most MAX_REMOVALS cameras removed, one camera's publishes at a
    time, every topic publishable, the configured camera untouched."""
    pipeline = make_pipeline({"gate": {}}, ha=True)
    first = pipeline.handle(MessageIn("anpr/bridge/cameras", forged_registry(), retained=True))
    assert len([e for e in first if isinstance(e, Publish)]) <= 8
    effects = drain(pipeline, first)
    publishes = [e for e in effects if isinstance(e, Publish)]
    warnings = [e for e in effects if getattr(e, "level", 0) == logging.WARNING]
    assert len(warnings) == 2
    removed = {p.topic.split("/")[2] for p in publishes}
    assert len(removed) == MAX_REMOVALS
    assert "hik2mqtt_gate" not in removed
    assert all(topic_problem(p.topic) is None for p in publishes)
    assert all(e.delay > 0 for e in effects if isinstance(e, Later))


# -- the link refuses a bad topic -------------------------------------------------------


@pytest.fixture
def link(broker: AnyBroker) -> Iterator[tuple[MqttLink, list[Incoming]]]:
    received: list[Incoming] = []
    made = MqttLink(
        settings=MqttSettings.model_validate({"host": broker.host, "port": broker.port}),
        will_topic=None,
        subscriptions=[],
        on_connect=lambda: None,
        on_incoming=received.append,
    )
    made.start()
    wait_until(made.connected.is_set)
    yield made, received
    made.stop([])


def test_link_refuses_a_bad_topic_once_and_stays_connected(
    link: tuple[MqttLink, list[Incoming]],
    prefix: str,
    subscribe: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Publishing on a topic with NUL or `+` is refused with one warning per topic (not per
    try), nothing reaches paho or the broker, and the connection stays up for the next."""
    mqtt, _ = link
    sub = subscribe(f"{prefix}/#")
    for _ in range(3):
        assert mqtt.publish(f"{prefix}/nul\x00x", b"") is None
        assert mqtt.publish(f"{prefix}/+/x", b"") is None
    assert mqtt.publish(f"{prefix}/ok", b"1") is not None
    sub.wait_for(f"{prefix}/ok")
    assert mqtt.connected.is_set()
    refused = [r for r in caplog.records if "not publishing on" in r.getMessage()]
    assert len(refused) == 2
    assert all("\x00" not in r.getMessage() for r in refused)


def test_untrusted_rules_import_only_the_standard_library() -> None:
    """core/untrusted.py, in a fresh interpreter, loads nothing but the standard library
    and the hik2mqtt package itself."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import hik2mqtt.core.untrusted\n"
        "print(sorted(m for m in set(sys.modules) - before if m.partition('.')[0] not in "
        "sys.stdlib_module_names and m not in ('hik2mqtt', 'hik2mqtt.core', "
        "'hik2mqtt.core.untrusted')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- a forged retained registry against the real bridge ---------------------------------

REGISTRIES = {
    "nul": json.dumps(["nul\u0000x", "old"]).encode(),
    "wildcards": json.dumps(["+", "#", "a+b", "c#", "old"]).encode(),
    "10k": forged_registry(),
}


@pytest.mark.parametrize("registry", list(REGISTRIES))
def test_forged_retained_registry_leaves_reads_on_time(
    registry: str,
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    subscribe: Subscribe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A retained ``<prefix>/bridge/cameras`` left by an attacker (a name with U+0000, names
    with ``+`` and ``#``, 10,000 names), found by a bridge with Home Assistant discovery on:
    the good camera's reads reach a subscriber within 1 s of being served (during the old
    cameras' removal and after it), the bridge connects once and stays connected (no
    reconnect loop), the good old cameras are removed (at most MAX_REMOVALS), and the log
    has a bounded number of lines about it, none a traceback."""
    caplog.set_level(logging.INFO)
    ha = f"ha{prefix}"
    sub = subscribe(f"{prefix}/#", f"{ha}/#")
    sub.publish(f"{prefix}/bridge/cameras", REGISTRIES[registry], retain=True)
    proxy = Stand_in(broker, refuse_v5=False)  # counts the bridge's connections
    settings = bridge_settings(
        proxy,  # type: ignore[arg-type]  # host and port are all it takes
        prefix,
        {"gate": camera_config(simulator)},
        homeassistant={"prefix": ha},
    )
    bridge = Bridge(settings=settings)
    expected = MAX_REMOVALS if registry == "10k" else 1

    def removed() -> set[str]:
        gone = [m for m in sub.messages if m.topic.startswith(f"{ha}/") and not m.payload]
        return {m.topic.split("/")[2] for m in gone}

    def on_time(plate: str, count: int) -> None:
        served = time.perf_counter()
        simulator.emit_read(plate)
        got = sub.wait_for(f"{prefix}/gate/plate", count, timeout=5)[-1]
        assert json.loads(got.payload)["plate"] == plate
        assert got.at - served < 1.0, f"{plate} took {got.at - served:.2f} s"

    bridge.start()
    try:
        assert simulator.wait_for_streams(1, timeout=10)
        sub.wait_for(f"{prefix}/gate/status")
        on_time("EARLY 1", 1)  # while the old cameras are being removed
        wait_until(lambda: len(removed()) >= expected)
        wait_until(lambda: sub.payloads(f"{prefix}/bridge/cameras")[-1:] == [b'["gate"]'])
        on_time("LATE 2", 2)
        assert proxy.levels == [5], proxy.firsts
        assert bridge.link.connected.is_set()
    finally:
        bridge.stop()
        sub.publish(f"{prefix}/bridge/cameras", b"", retain=True)
        proxy.close()
    assert len(removed()) == expected
    assert "hik2mqtt_gate" not in removed()
    assert all(topic_problem(m.topic) is None for m in sub.messages)
    about = [
        r.getMessage()
        for r in caplog.records
        if any(w in r.getMessage() for w in ("registry", "no longer configured", "not publishing"))
    ]
    assert len(about) <= expected + 2, about
    assert not [r for r in caplog.records if r.exc_info or "queue full" in r.getMessage()]
    assert not [r for r in caplog.records if "reconnect" in r.getMessage()]
