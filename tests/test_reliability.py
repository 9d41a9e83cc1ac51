"""Faults injected against real processes: the broker stopped and restarted, the bridge
restarted mid-outage, SIGTERM with reads in flight, cameras cut, silent, slow or gone,
stale reads, command floods and refused logins. docs/RELIABILITY.md names each test."""

from __future__ import annotations

import json
import logging
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hik2mqtt.bridge import Bridge
from hik2mqtt.multipart import MultipartParser
from hik2mqtt.reads import ReadArrived, ReadAssembler
from hik2mqtt.simulator import Simulator
from hik2mqtt.simulator.encoders import encode_part, encode_read, make_read
from hik2mqtt.spool import MemorySpool, SqliteSpool
from tests.conftest import (
    AnyBroker,
    Broker,
    RunBridge,
    Subscribe,
    Subscriber,
    bridge_settings,
    camera_config,
    process_env,
    wait_until,
)


def plates(sub: Subscriber, topic: str) -> list[str | None]:
    return [json.loads(p)["plate"] for p in sub.payloads(topic)]


# -- the spool ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_spool_keeps_order_bounds_and_prepends(kind: str, tmp_path: Path) -> None:
    """A spool is a FIFO; rows put back at the head come first; past its bound the oldest
    go; rows in flight can be skipped when peeking."""
    spool = SqliteSpool(tmp_path, max_rows=5) if kind == "sqlite" else MemorySpool(max_rows=5)
    for i in range(4):
        spool.append("t", b"%d" % i)
    spool.prepend([("t", b"a"), ("t", b"b")])
    assert len(spool) == 5  # b"a", put back at the head, was the oldest and went
    rows = spool.peek(10, exclude=set())
    assert [p for _, _, p in rows] == [b"b", b"0", b"1", b"2", b"3"]
    spool.delete(rows[0][0])
    assert [p for _, _, p in spool.peek(2, exclude={rows[1][0]})] == [b"1", b"2"]
    spool.close()


def test_sqlite_spool_survives_reopening(tmp_path: Path) -> None:
    """Rows written to the on-disk spool are there after it is closed and opened again."""
    spool = SqliteSpool(tmp_path, max_rows=100)
    spool.append("a/b", b"one")
    spool.append("a/b", b"two")
    spool.close()
    again = SqliteSpool(tmp_path, max_rows=100)
    assert [(t, p) for _, t, p in again.peek(10, exclude=set())] == [
        ("a/b", b"one"),
        ("a/b", b"two"),
    ]
    again.close()


# -- broker faults ------------------------------------------------------------------------


def persistent_broker() -> Broker:
    broker = Broker(persistence=True)
    broker.start()
    return broker


def test_bridge_restart_during_broker_outage_loses_nothing(
    prefix: str, simulator: Simulator, subscribe: Subscribe, tmp_path: Path
) -> None:
    """Reads made while the broker is down survive a bridge restart in the on-disk spool
    and arrive once, in order, when the broker is back."""
    broker = persistent_broker()
    try:
        sub = subscribe(f"{prefix}/+/plate", target=broker, persistent=True)
        conf = bridge_settings(
            broker, prefix, {"cam": camera_config(simulator)}, spool_dir=str(tmp_path)
        )
        first = Bridge(settings=conf)
        first.start()
        simulator.wait_for_streams(1)
        wait_until(first.link.connected.is_set)
        simulator.emit_read("BEFORE")
        sub.wait_for(f"{prefix}/cam/plate")
        broker.stop()
        wait_until(lambda: not first.link.connected.is_set())
        sent = [simulator.emit_read(f"OUT{i}").plate for i in range(5)]
        wait_until(lambda: first.outbox.waiting == 5)
        first.stop()
        wait_until(lambda: simulator.stream_count == 0)
        second = Bridge(settings=conf)
        second.start()
        assert simulator.wait_for_streams(1)
        sent += [simulator.emit_read(f"LATER{i}").plate for i in range(3)]
        wait_until(lambda: second.outbox.waiting == 8)
        broker.start()
        wait_until(lambda: len(plates(sub, f"{prefix}/cam/plate")) >= 9, timeout=20)
        wait_until(lambda: second.outbox.waiting == 0)
        assert plates(sub, f"{prefix}/cam/plate") == ["BEFORE", *sent]
        second.stop()
    finally:
        broker.close()


def test_sigterm_with_reads_in_flight_loses_none(
    prefix: str, subscribe: Subscribe, tmp_path: Path
) -> None:
    """SIGTERM right after the camera sent a burst of reads: every read it had fully sent is
    delivered, or kept in the spool and delivered by the next run."""
    broker = persistent_broker()
    sim = Simulator(heartbeat=None).start()
    try:
        sub = subscribe(f"{prefix}/+/plate", target=broker, persistent=True)
        env = process_env(broker, prefix, {"cam": sim}, HIK2MQTT_SPOOL_DIR=str(tmp_path))

        def run() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "hik2mqtt", "run"], env=env, cwd=tmp_path
            )

        proc = run()
        assert sim.wait_for_streams(1, timeout=20)
        burst = [make_read(f"B{i:03d}", picture_size=20_000) for i in range(60)]
        writes = sim.writes
        sim.send_raw(b"".join(encode_read(r) for r in burst))
        wait_until(lambda: sim.writes > writes, interval=0.0005)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        got = plates(sub, f"{prefix}/cam/plate")
        with sqlite3.connect(tmp_path / SqliteSpool.FILE) as db:
            spooled = db.execute("SELECT count(*) FROM spool").fetchone()[0]
        assert len(set(got)) + spooled >= 60
        proc = run()  # the next run delivers what the spool kept
        try:
            wait_until(lambda: len(plates(sub, f"{prefix}/cam/plate")) >= 60, timeout=20)
            assert plates(sub, f"{prefix}/cam/plate") == [r.plate for r in burst]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
    finally:
        sim.stop()
        broker.close()


# -- camera faults ------------------------------------------------------------------------


def test_cut_mid_part_publishes_nothing_half_read(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """A stream cut in the middle of an event's XML publishes nothing from it; the reopened
    stream goes on."""
    sub = subscribe(f"{prefix}/+/plate")
    run_bridge(bridge_settings(broker, prefix, {"cam": camera_config(simulator)}))
    simulator.wait_for_streams(1)
    half = encode_part("boundary", make_read("HALF").xml, content_type="application/xml")
    simulator.send_raw(half[: len(half) // 2])
    simulator.cut_streams()
    wait_until(lambda: simulator.count("/ISAPI/Event") >= 2)
    assert simulator.wait_for_streams(1)
    simulator.emit_read("WHOLE")
    sub.wait_for(f"{prefix}/cam/plate")
    assert plates(sub, f"{prefix}/cam/plate") == ["WHOLE"]


def test_camera_back_within_five_seconds_and_logged_once(
    broker: AnyBroker,
    prefix: str,
    run_bridge: RunBridge,
    subscribe: Subscribe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A camera down through several retries is reported once (not a line per retry), and
    its stream is open again within 5 s of it being reachable."""
    caplog.set_level(logging.DEBUG, logger="hik2mqtt.worker")
    sub = subscribe(f"{prefix}/cam/status")
    sim = Simulator(heartbeat=None).start()
    port = sim.port
    run_bridge(bridge_settings(broker, prefix, {"cam": camera_config(sim)}))
    assert sim.wait_for_streams(1)
    sim.stop()
    wait_until(lambda: sub.payloads(f"{prefix}/cam/status")[-1:] == [b"offline"])
    wait_until(lambda: caplog.text.count("still unreachable") >= 3, timeout=20)
    back = Simulator(heartbeat=None, port=port).start()
    try:
        assert back.wait_for_streams(1, timeout=5)
        wait_until(lambda: sub.payloads(f"{prefix}/cam/status")[-1:] == [b"online"], timeout=5)
    finally:
        back.stop()
    warnings = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "camera cam" in r.getMessage()
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


def test_dns_failure_and_slow_camera(
    broker: AnyBroker, prefix: str, run_bridge: RunBridge, subscribe: Subscribe
) -> None:
    """A camera whose name doesn't resolve is offline; a camera that takes a while to
    answer is still read."""
    sub = subscribe(f"{prefix}/#")
    with Simulator(heartbeat=None, answer_delay=1.5) as slow:
        cameras = {
            "slow": camera_config(slow),
            "nodns": {"host": "camera.does-not-exist.invalid", "password": "x"},
        }
        run_bridge(bridge_settings(broker, prefix, cameras))
        assert slow.wait_for_streams(1, timeout=10)
        slow.emit_read("SLOW 1")
        sub.wait_for(f"{prefix}/slow/plate")
        wait_until(lambda: sub.payloads(f"{prefix}/nodns/status")[-1:] == [b"offline"])


# -- stale reads ----------------------------------------------------------------------------


def test_old_reads_are_marked_retransmitted_with_their_age(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """A read far behind the bridge's clock is published with retransmitted true and its
    age; a fresh one is not."""
    sub = subscribe(f"{prefix}/+/plate")
    run_bridge(bridge_settings(broker, prefix, {"cam": camera_config(simulator, max_age=60)}))
    simulator.wait_for_streams(1)
    simulator.emit_read("OLD", taken=datetime.now().astimezone() - timedelta(hours=1))
    simulator.emit_read("NEW")
    sub.wait_for(f"{prefix}/cam/plate", 2)
    old, new = (json.loads(p) for p in sub.payloads(f"{prefix}/cam/plate"))
    assert old["retransmitted"] is True
    assert 3590 < old["age"] < 3700
    assert new["retransmitted"] is False
    assert -5 < new["age"] < 5


# -- commands -------------------------------------------------------------------------------


def test_trigger_flood_is_rate_limited_and_bad_payloads_refused(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """Triggers faster than the camera's interval are refused with a result, and so is a
    non-UTF-8 payload; neither reaches the camera."""
    sub = subscribe(f"{prefix}/+/trigger/result", f"{prefix}/bridge/status")
    cameras = {"cam": camera_config(simulator, trigger_interval=30)}
    run_bridge(bridge_settings(broker, prefix, cameras))
    sub.wait_for(f"{prefix}/bridge/status")  # so the bridge has subscribed to commands
    for _ in range(5):
        sub.publish(f"{prefix}/cam/trigger", "go")
    sub.publish(f"{prefix}/cam/trigger", b"\xff\xfe\xfd")
    results = [json.loads(m.payload) for m in sub.wait_for(f"{prefix}/cam/trigger/result", 6)]
    assert sum(r["ok"] for r in results) == 1
    assert sum("rate limited" in r["message"] for r in results) == 4
    assert any(r["message"] == "payload is not UTF-8 text" for r in results)
    assert simulator.count("/ISAPI/Traffic/MNPR") == 1


def test_refused_login_blocks_triggers_too(
    broker: AnyBroker, prefix: str, run_bridge: RunBridge, subscribe: Subscribe
) -> None:
    """After the camera refused our login, a trigger does not try again (which would help
    lock the account); it says why."""
    sub = subscribe(f"{prefix}/#")
    with Simulator(heartbeat=None) as sim:
        cameras = {"cam": {**camera_config(sim), "password": "wrong"}}
        run_bridge(bridge_settings(broker, prefix, cameras))
        wait_until(lambda: sub.payloads(f"{prefix}/cam/status")[-1:] == [b"offline"])
        sub.publish(f"{prefix}/cam/trigger", "")
        (result,) = sub.wait_for(f"{prefix}/cam/trigger/result")
        assert "refused our login" in json.loads(result.payload)["message"]
        assert sim.count("/ISAPI/Traffic", authorized=None) == 0
        assert sim.failed_logins == 1


# -- bad input ------------------------------------------------------------------------------

GOOD = [make_read(f"G{i}", kinds=("licensePlatePicture",)) for i in range(4)]
junk = st.binary(max_size=300).filter(lambda b: b"--" not in b)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(junk, min_size=len(GOOD) + 1, max_size=len(GOOD) + 1),
    st.lists(st.integers(0, 4000), max_size=20),
)
def test_good_reads_around_garbage_all_arrive_and_none_is_invented(
    garbage: list[bytes], cuts: list[int]
) -> None:
    """Garbage between parts, any split: every well-formed read is decoded, in order, and
    nothing else becomes a read."""
    stream = (
        b"".join(g + b"\r\n" + encode_read(r) for g, r in zip(garbage, GOOD, strict=False))
        + garbage[-1]
    )
    parser = MultipartParser("boundary")
    assembler = ReadAssembler()
    reads: list[Any] = []
    last = 0
    for cut in sorted({c for c in cuts if c < len(stream)} | {len(stream)}):
        for part in parser.feed(stream[last:cut]):
            out = assembler.handle(part)
            if isinstance(out, ReadArrived):
                reads.append(out.read.plate)
        last = cut
    assert reads == [r.plate for r in GOOD]
