"""Gate control: outputs and barrier commands, plate lists and forgiving matching,
duplicates, and the built-in gate rule, against the simulator and a real broker."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hik2mqtt.config import GateSettings
from hik2mqtt.gate import decide
from hik2mqtt.plates import Duplicates, Entry, ListsFile, Match, normalize, parse_lists
from hik2mqtt.simulator import Simulator
from tests.conftest import (
    AnyBroker,
    RunBridge,
    Subscribe,
    Subscriber,
    bridge_settings,
    camera_config,
    wait_until,
)

# -- normalisation and matching (tables) ----------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("AB12 CDE", "AB12CDE"),
        ("ab-12.cde", "AB12CDE"),
        ("АВ12 СDЕ", "AB12CDE"),  # Cyrillic А, В, С, Е
        ("ΑΒ12CDΕ", "AB12CDE"),  # Greek Α, Β, Ε
        ("京A·12345", "京A12345"),
        ("unknown", None),
        ("--", None),
        ("  ", None),
        (None, None),
    ],
)
def test_normalize(raw: str | None, expected: str | None) -> None:
    """Case, separators and look-alike letters don't matter; placeholders mean no plate."""
    assert normalize(raw) == expected


LISTS = parse_lists(
    """
lists:
  deny:
    plates: [EVIL 1]
  allow:
    tolerance: 1
    plates:
      - plate: AB12 CDE
        name: Alice
        notes: blue van
      - XY99ZZZ
""",
    csv_format=False,
)


@pytest.mark.parametrize(
    ("plate", "expected"),
    [
        ("ab12cde", ("allow", "AB12 CDE", 0)),
        ("A812CDE", ("allow", "AB12 CDE", 1)),  # 8 read for B: a confusable pair
        ("AB12CD", ("allow", "AB12 CDE", 1)),  # one character missed
        ("AB1XCDF", None),  # two differences: past the tolerance
        ("EVIL 1", ("deny", "EVIL 1", 0)),
        ("EV1L 1", None),  # deny lists are exact unless they ask otherwise
        ("unknown", None),
    ],
)
def test_matching(plate: str, expected: tuple[str, str, int] | None) -> None:
    """Exact matches first; tolerance only where a list asks for it."""
    found = LISTS.match(plate)
    got = (found.list, found.entry.plate, found.distance) if found else None
    assert got == expected


def test_csv_lists_and_reload_keeps_good_lists(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """CSV lists load; a broken edit is reported and the lists stay as they were."""
    path = tmp_path / "lists.csv"
    path.write_text("list,plate,name,notes\nallow,AB12CDE,Alice,\nallow,XY99 ZZZ,,night shift\n")
    lists = ListsFile(path)
    match = lists.lists.match("xy99zzz")
    assert match is not None
    assert match.entry == Entry("XY99 ZZZ", None, "night shift")
    path.write_text("list,plate\n,\n")
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert lists.reload() is False
    assert "keeping the lists as they were" in caplog.text
    assert lists.lists.match("AB12CDE") is not None


def test_a_file_replaced_by_rename_is_read_even_with_the_same_size_and_mtime(
    tmp_path: Path,
) -> None:
    """A lists file replaced by a rename (the page's save, an editor's) is read again even
    when the new file has the old one's size and mtime: the inode tells them apart."""
    path = tmp_path / "lists.yaml"
    path.write_text("lists:\n  allow: [AAA111]\n")
    lists = ListsFile(path)
    assert lists.lists.match("AAA111") is not None
    old = path.stat()
    new = tmp_path / "lists.yaml.tmp"
    new.write_text("lists:\n  allow: [BBB222]\n")
    os.utime(new, ns=(old.st_atime_ns, old.st_mtime_ns))
    os.replace(new, path)
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    assert lists.reload() is True
    assert lists.lists.match("BBB222") is not None
    assert lists.lists.match("AAA111") is None


def test_duplicates_window() -> None:
    """The same plate within the window is a duplicate; after it, it fires again."""
    now = [100.0]
    dup = Duplicates(10.0, clock=lambda: now[0])
    assert dup.check("cam", "AB12CDE") is False
    now[0] += 5
    assert dup.check("cam", "AB12CDE") is True
    assert dup.check("other", "AB12CDE") is False
    now[0] += 6  # 11 s after the read that fired
    assert dup.check("cam", "AB12CDE") is False


ALICE = Match("allow", Entry("AB12CDE", "Alice"), 0)


@pytest.mark.parametrize(
    ("changes", "opens", "reason"),
    [
        ({}, True, "on list 'allow': Alice"),
        ({"plate": None}, False, "no plate read"),
        ({"retransmitted": True}, False, "retransmitted read"),
        ({"duplicate": True}, False, "duplicate"),
        ({"age": 45.0}, False, "45 s old"),
        ({"confidence": 50}, False, "confidence 50 below 80"),
        ({"match": None}, False, "not on list 'allow'"),
        ({"match": Match("deny", Entry("AB12CDE"), 0)}, False, "on list 'deny'"),
    ],
)
def test_gate_decisions(changes: dict[str, Any], opens: bool, reason: str) -> None:
    """The rule opens only for a live, confident read on its list, and says why not."""
    read: dict[str, Any] = {
        "plate": "AB12CDE",
        "confidence": 95,
        "retransmitted": False,
        "duplicate": False,
        "age": 0.5,
        "match": ALICE,
    }
    decision = decide(GateSettings(enabled=True), **{**read, **changes})
    assert decision.open is opens
    assert reason in decision.reason


# -- against the simulator --------------------------------------------------------------------


def test_output_on_off_pulse_and_confirmed_state(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """on/off set the relay; a number pulses it; the state the camera confirms is retained
    on the state topic and each outcome goes to .../set/result."""
    sub = subscribe(f"{prefix}/#")
    run_bridge(bridge_settings(broker, prefix, {"cam": camera_config(simulator)}))
    sub.wait_for(f"{prefix}/bridge/status")
    sub.publish(f"{prefix}/cam/output/1/set", "on")
    (result,) = sub.wait_for(f"{prefix}/cam/output/1/set/result")
    assert json.loads(result.payload) == {
        "ok": True,
        "status": 200,
        "message": "output 1 high",
        "state": "on",
    }
    assert simulator.outputs[1] == "high"
    assert sub.on(f"{prefix}/cam/output/1")[-1].payload == b"on"
    sub.publish(f"{prefix}/cam/output/1/set", "0.3")
    wait_until(lambda: sub.payloads(f"{prefix}/cam/output/1")[-1:] == [b"off"])
    assert simulator.outputs[1] == "low"
    bodies = [b for p, b in simulator.puts if p == "/ISAPI/System/IO/outputs/1/trigger"]
    assert [b"high" in b for b in bodies] == [True, True, False]
    sub.publish(f"{prefix}/cam/output/1/set", "sideways")
    wait_until(lambda: len(sub.on(f"{prefix}/cam/output/1/set/result")) == 4)
    assert (
        "expected on, off"
        in json.loads(sub.payloads(f"{prefix}/cam/output/1/set/result")[-1])["message"]
    )


def test_barrier_and_notsupport(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """barrier/set open sends BarrierGate ctrlMode open; a camera that answers notSupport on
    System/IO says so on the result."""
    simulator.io_supported = False
    sub = subscribe(
        f"{prefix}/+/+/set/result", f"{prefix}/+/+/+/set/result", f"{prefix}/bridge/status"
    )
    run_bridge(bridge_settings(broker, prefix, {"cam": camera_config(simulator)}))
    sub.wait_for(f"{prefix}/bridge/status")  # so the bridge has subscribed to commands
    sub.publish(f"{prefix}/cam/barrier/set", "open")
    (result,) = sub.wait_for(f"{prefix}/cam/barrier/set/result")
    assert json.loads(result.payload)["ok"] is True
    assert simulator.puts == [
        (
            "/ISAPI/Parking/channels/1/barrierGate",
            b'<?xml version="1.0" encoding="UTF-8"?><BarrierGate><ctrlMode>open</ctrlMode></BarrierGate>',
        )
    ]
    sub.publish(f"{prefix}/cam/output/1/set", "on")
    (refused,) = sub.wait_for(f"{prefix}/cam/output/1/set/result")
    outcome = json.loads(refused.payload)
    assert (outcome["ok"], outcome["status"], outcome["sub_status"]) == (False, 403, "notSupport")


def write_lists(path: Path, allow: list[str]) -> None:
    plates = "\n".join(f"      - plate: {p}\n        name: N{i}" for i, p in enumerate(allow))
    path.write_text(f"lists:\n  allow:\n    plates:\n{plates}\n")


def test_reads_carry_match_duplicate_and_state_and_lists_reload(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
    tmp_path: Path,
) -> None:
    """Each read carries normalized, match and duplicate; the last read is retained on
    state; an edited lists file takes effect without a restart."""
    lists = tmp_path / "lists.yaml"
    write_lists(lists, ["AB12 CDE"])
    sub = subscribe(f"{prefix}/#")
    run_bridge(
        bridge_settings(broker, prefix, {"cam": camera_config(simulator)}, lists_file=str(lists))
    )
    simulator.wait_for_streams(1)
    simulator.emit_read("ab12-cde")
    simulator.emit_read("AB12CDE")
    first, second = (
        json.loads(p) for p in (m.payload for m in sub.wait_for(f"{prefix}/cam/plate", 2))
    )
    assert first["normalized"] == "AB12CDE"
    assert first["match"] == {
        "list": "allow",
        "entry": {"plate": "AB12 CDE", "name": "N0", "notes": None},
        "distance": 0,
    }
    assert (first["duplicate"], second["duplicate"]) == (False, True)
    wait_until(lambda: sub.on(f"{prefix}/cam/state"))
    late = subscribe(f"{prefix}/cam/state")
    assert late.wait_for(f"{prefix}/cam/state")[0].retain
    write_lists(lists, ["ZZ99 ZZZ"])
    os.utime(lists, (time.time() + 5, time.time() + 5))
    wait_until(lambda: bridge_lists_changed(simulator, sub, prefix))


def bridge_lists_changed(simulator: Simulator, sub: Subscriber, prefix: str) -> bool:
    simulator.emit_read("ZZ99ZZZ")
    wait_until(
        lambda: any(
            json.loads(p)["plate"] == "ZZ99ZZZ" for p in sub.payloads(f"{prefix}/cam/plate")
        )
    )
    last = [
        json.loads(p)
        for p in sub.payloads(f"{prefix}/cam/plate")
        if json.loads(p)["plate"] == "ZZ99ZZZ"
    ][-1]
    return last["match"] is not None


def test_gate_rule_opens_for_live_known_cars_only(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
    tmp_path: Path,
) -> None:
    """With the rule on, a live read of a listed plate pulses the output; a retransmitted,
    stale or unknown read does not, and each decision and its reason is on gate."""
    lists = tmp_path / "lists.yaml"
    write_lists(lists, ["AB12CDE", "OLD 1", "RETX 1"])
    cam = camera_config(simulator, gate={"enabled": True, "output": 2, "pulse": 0.2})
    sub = subscribe(f"{prefix}/#")
    run_bridge(bridge_settings(broker, prefix, {"cam": cam}, lists_file=str(lists)))
    simulator.wait_for_streams(1)
    simulator.emit_read("RETX 1", retransmitted=True)
    simulator.emit_read("OLD 1", taken=datetime.now().astimezone() - timedelta(minutes=2))
    simulator.emit_read("STRANGER")
    simulator.emit_read("AB12CDE")
    decisions = [json.loads(m.payload) for m in sub.wait_for(f"{prefix}/cam/gate", 4)]
    assert [(d["plate"], d["open"]) for d in decisions] == [
        ("RETX 1", False),
        ("OLD 1", False),
        ("STRANGER", False),
        ("AB12CDE", True),
    ]
    assert "retransmitted" in decisions[0]["reason"]
    assert "old" in decisions[1]["reason"]
    assert "not on list" in decisions[2]["reason"]
    assert decisions[3]["action"] == "output 2 for 0.2 s"
    wait_until(lambda: sub.payloads(f"{prefix}/cam/output/2")[-1:] == [b"off"])
    assert [b"high" in b for p, b in simulator.puts if "/outputs/2/" in p] == [True, False]


def test_a_pulse_in_progress_ends_when_the_bridge_stops(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    subscribe: Subscribe,
) -> None:
    """A bridge stopped during a 60 s pulse switches the output off before it goes: no relay
    (no barrier) is left on by a stop."""
    from hik2mqtt.bridge import Bridge

    sub = subscribe(f"{prefix}/#")
    bridge = Bridge(settings=bridge_settings(broker, prefix, {"cam": camera_config(simulator)}))
    bridge.start()
    try:
        sub.wait_for(f"{prefix}/bridge/status")
        sub.publish(f"{prefix}/cam/output/1/set", "60")
        sub.wait_for(f"{prefix}/cam/output/1/set/result")
        assert simulator.outputs[1] == "high"
    finally:
        bridge.stop()
    assert simulator.outputs[1] == "low"
