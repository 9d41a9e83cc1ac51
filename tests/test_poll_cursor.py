"""Poll mode keeps its cursor in the spool folder: reads a camera made while the bridge was
stopped arrive once when it returns, marked retransmitted with their age; without a spool
folder the backlog is never replayed."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hik2mqtt.bridge import Bridge
from hik2mqtt.config import Settings
from hik2mqtt.poll import PollFetcher
from hik2mqtt.simulator import Simulator
from hik2mqtt.spool import CursorStore
from tests.conftest import (
    AnyBroker,
    Subscribe,
    Subscriber,
    bridge_settings,
    camera_config,
    wait_until,
)

PLATES = "/ISAPI/Traffic/channels/1/vehicleDetect/plates"


def test_cursor_store_keeps_one_cursor_per_camera_across_instances(tmp_path: Path) -> None:
    """A saved cursor is read back by a new store on the same folder, per camera."""
    store = CursorStore(tmp_path)
    assert store.get("traffic") is None
    store.set("traffic", "202611261200000001")
    store.set("other", "7")
    store.set("traffic", "202611261200000002")
    again = CursorStore(tmp_path)
    assert again.get("traffic") == "202611261200000002"
    assert again.get("other") == "7"


def test_cursor_store_errors_are_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cursor that is not a picName is ignored; a store that cannot be written logs an
    error and the poll goes on (nothing raises into the worker)."""
    store = CursorStore(tmp_path)
    store.set("traffic", "12\u00b2")
    assert store.get("traffic") is None
    store.path.unlink()
    store.path.mkdir()  # a folder where the database should be: sqlite cannot open it
    store.set("traffic", "5")
    assert store.get("traffic") is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 3
    assert not any(r.exc_info for r in errors)


def settings_for(
    broker: AnyBroker, prefix: str, sim: Simulator, spool: Path | None, **extra: Any
) -> Settings:
    cam = camera_config(sim, mode="poll", poll_interval=0.2)
    return bridge_settings(
        broker, prefix, {"traffic": cam}, spool_dir=str(spool) if spool else None, **extra
    )


@contextmanager
def running(settings: Settings) -> Iterator[PollFetcher]:
    bridge = Bridge(settings=settings)
    bridge.start()
    try:
        worker = bridge.cameras["traffic"].worker
        assert worker is not None
        assert isinstance(worker.fetcher, PollFetcher)
        yield worker.fetcher
    finally:
        bridge.stop()


def polled(sim: Simulator, times: int) -> None:
    """Wait until the bridge has polled the plate list ``times`` more times."""
    start = sim.count(PLATES)
    wait_until(lambda: sim.count(PLATES) >= start + times)


def plates(sub: Subscriber, topic: str) -> list[dict[str, Any]]:
    return [json.loads(p) for p in sub.payloads(topic)]


def test_reads_made_while_stopped_arrive_once_with_their_age_and_never_as_live(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    subscribe: Subscribe,
    tmp_path: Path,
) -> None:
    """With a spool folder: the list before the first start is not replayed; reads made while
    the bridge was stopped arrive once, oldest first, retransmitted with their age; new reads
    are live; a second restart republishes nothing."""
    topic = f"{prefix}/traffic/plate"
    sub = subscribe(f"{prefix}/#")
    settings = settings_for(broker, prefix, simulator, tmp_path / "spool")
    simulator.add_plate("YESTERDAY 1")
    with running(settings) as worker:
        wait_until(lambda: worker.cursor is not None)
        simulator.add_plate("LIVE 1")
        sub.wait_for(topic)
    away = [simulator.add_plate(f"AWAY {i}") for i in range(3)]
    with running(settings):
        sub.wait_for(topic, 4)
        simulator.add_plate("LIVE 2")
        sub.wait_for(topic, 5)
        polled(simulator, 3)
    got = plates(sub, topic)
    assert [p["plate"] for p in got] == ["LIVE 1", "AWAY 0", "AWAY 1", "AWAY 2", "LIVE 2"]
    assert [p["event_id"] for p in got[1:4]] == away
    assert [p["retransmitted"] for p in got] == [False, True, True, True, False]
    assert all(isinstance(p["age"], int | float) and p["age"] >= 0 for p in got)
    with running(settings):
        polled(simulator, 5)
    assert len(plates(sub, topic)) == 5  # nothing twice
    assert CursorStore(tmp_path / "spool").get("traffic") == got[-1]["event_id"]


def test_without_a_spool_folder_the_backlog_is_never_replayed(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    subscribe: Subscribe,
) -> None:
    """Without a spool folder, reads made while the bridge was stopped are not published
    when it returns (today's behaviour); new ones are."""
    topic = f"{prefix}/traffic/plate"
    sub = subscribe(f"{prefix}/#")
    settings = settings_for(broker, prefix, simulator, None)
    with running(settings) as worker:
        wait_until(lambda: worker.cursor is not None)
        simulator.add_plate("LIVE 1")
        sub.wait_for(topic)
    simulator.add_plate("AWAY 1")
    with running(settings) as worker:
        wait_until(lambda: worker.cursor is not None)
        simulator.add_plate("LIVE 2")
        sub.wait_for(topic, 2)
        polled(simulator, 3)
    assert [p["plate"] for p in plates(sub, topic)] == ["LIVE 1", "LIVE 2"]
