"""Supervised threads against the real bridge: each kind of thread's work is broken once by an
injected exception, and the bridge logs it, tells the truth, and carries on.

The failures are injected into real objects (a camera client class passed to the bridge,
methods replaced on the bridge's own instances); the camera is the simulator over real
HTTP and the broker a real Mosquitto.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hik2mqtt.bridge import Bridge
from hik2mqtt.camera import CameraClient, EventStream
from hik2mqtt.pipeline import ReadIn
from hik2mqtt.simulator import Simulator
from tests.conftest import (
    AnyBroker,
    Broker,
    Subscribe,
    Subscriber,
    bridge_settings,
    camera_config,
    changes,
    wait_until,
)

INJECTED = "injected failure"


class Flaky:
    """Wraps a callable: the first ``times`` calls that ``when`` lets through raise
    RuntimeError; every other call goes to the real one."""

    def __init__(
        self,
        real: Callable[..., Any],
        *,
        times: int = 1,
        when: Callable[..., bool] = lambda *_a, **_k: True,
        message: str = INJECTED,
    ) -> None:
        self.real = real
        self.left = times
        self.when = when
        self.message = message
        self.calls = 0
        self.raised = 0
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
            fail = self.left > 0 and self.when(*args, **kwargs)
            if fail:
                self.left -= 1
                self.raised += 1
        if fail:
            raise RuntimeError(self.message)
        return self.real(*args, **kwargs)


@contextmanager
def running(bridge: Bridge) -> Iterator[Bridge]:
    bridge.start()
    try:
        yield bridge
    finally:
        bridge.stop()


def plates(sub: Subscriber, topic: str) -> list[str]:
    return [json.loads(p)["plate"] for p in sub.payloads(topic)]


def assert_trigger_works(sub: Subscriber, prefix: str, simulator: Simulator, *, nth: int) -> None:
    """A trigger now (the ``nth`` on the camera) reaches the camera and is answered ok."""
    before = simulator.count("/ISAPI/Traffic/MNPR")
    sub.publish(f"{prefix}/cam/trigger", "")
    result = sub.wait_for(f"{prefix}/cam/trigger/result", nth)[nth - 1]
    assert json.loads(result.payload)["ok"] is True
    assert simulator.count("/ISAPI/Traffic/MNPR") == before + 1


def tracebacks(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    """Records logged with a traceback of the injected failure whose message has ``text``."""
    return [
        r
        for r in caplog.records
        if r.exc_info and INJECTED in str(r.exc_info[1]) and text in r.getMessage()
    ]


def test_camera_worker_crash_goes_offline_logs_once_and_recovers(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    subscribe: Subscribe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A camera worker whose client raises unexpectedly (twice, the same way) marks the
    camera offline, logs the traceback once and a short line for the repeat, restarts
    after its backoff, goes online and publishes the camera's reads."""
    opened = Flaky(lambda: None, times=2)

    class BrokenOnce(CameraClient):
        def open_stream(self) -> EventStream:
            opened()
            return super().open_stream()

    sub = subscribe(f"{prefix}/#")
    settings = bridge_settings(broker, prefix, {"cam": camera_config(simulator)})
    with running(Bridge(settings=settings, new_client=BrokenOnce)):
        wait_until(lambda: changes(sub, f"{prefix}/cam/status") == [b"offline", b"online"])
        assert opened.raised == 2
        assert simulator.wait_for_streams(1)
        simulator.emit_read("BACK 1")
        (msg,) = sub.wait_for(f"{prefix}/cam/plate")
        assert json.loads(msg.payload)["plate"] == "BACK 1"
    (logged,) = tracebacks(caplog, "stream-cam failed unexpectedly")
    assert logged.levelno == logging.ERROR
    again = [r for r in caplog.records if "stream-cam failed again" in r.getMessage()]
    assert len(again) == 1
    assert again[0].exc_info is None
    assert INJECTED in again[0].getMessage()


def test_control_thread_crash_is_logged_and_commands_still_work(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    subscribe: Subscribe,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """When the control thread's housekeeping (the lists reload) raises, the failure is
    logged with its traceback, the thread starts again, and MQTT triggers still reach
    the camera afterwards."""
    lists = tmp_path / "lists.csv"
    lists.write_text("list,plate\nallow,AB12CDE\n")
    sub = subscribe(f"{prefix}/cam/trigger/result", f"{prefix}/bridge/status")
    settings = bridge_settings(
        broker, prefix, {"cam": camera_config(simulator)}, lists_file=str(lists)
    )
    bridge = Bridge(settings=settings)
    reload = Flaky(bridge.runtime.lists.reload)
    monkeypatch.setattr(bridge.runtime.lists, "reload", reload)
    with running(bridge):
        wait_until(lambda: reload.raised == 1 and reload.calls >= 2)  # ran again after
        assert len(tracebacks(caplog, "control failed unexpectedly")) == 1
        # The connect is handled on the control thread: bridge online says it has run
        # and the bridge has subscribed to commands.
        sub.wait_for(f"{prefix}/bridge/status")
        assert_trigger_works(sub, prefix, simulator, nth=1)


def test_command_crash_reports_internal_error_and_the_next_command_works(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    subscribe: Subscribe,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A command whose execution raises unexpectedly is answered "internal error" on its
    result topic (with the traceback in the log), and the camera's next command runs."""
    sub = subscribe(f"{prefix}/cam/trigger/result", f"{prefix}/bridge/status")
    cameras = {"cam": camera_config(simulator, trigger_interval=0)}
    bridge = Bridge(settings=bridge_settings(broker, prefix, cameras))
    runner = bridge.cameras["cam"].runner
    execute = Flaky(runner.execute)
    monkeypatch.setattr(runner, "execute", execute)
    with running(bridge):
        sub.wait_for(f"{prefix}/bridge/status")  # so the bridge has subscribed to commands
        sub.publish(f"{prefix}/cam/trigger", "")
        (failed,) = sub.wait_for(f"{prefix}/cam/trigger/result")
        assert json.loads(failed.payload) == {
            "ok": False,
            "status": None,
            "message": "internal error",
        }
        assert simulator.count("/ISAPI/Traffic/MNPR") == 0
        assert len(tracebacks(caplog, "camera cam: trigger failed")) == 1
        assert_trigger_works(sub, prefix, simulator, nth=2)


def test_outbox_crash_is_logged_and_waiting_reads_are_still_delivered(
    own_broker: Broker,
    prefix: str,
    simulator: Simulator,
    subscribe: Subscribe,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When delivering the reads that waited for the broker raises, the failure is logged
    with its traceback and those reads are still delivered, in order, with no other
    read arriving to nudge the outbox."""
    bridge = Bridge(settings=bridge_settings(own_broker, prefix, {"cam": camera_config(simulator)}))
    outbox = bridge.outbox
    drain = Flaky(outbox._drain, when=lambda: bridge.link.connected.is_set() and outbox.waiting > 0)
    monkeypatch.setattr(outbox, "_drain", drain)
    with running(bridge):
        assert simulator.wait_for_streams(1)
        wait_until(bridge.link.connected.is_set)
        own_broker.stop()
        wait_until(lambda: not bridge.link.connected.is_set())
        sent = [simulator.emit_read(f"WAIT {i}").plate for i in range(3)]
        wait_until(lambda: outbox.waiting == 3)
        own_broker.start()
        sub = subscribe(f"{prefix}/#", target=own_broker)
        wait_until(lambda: drain.raised == 1, timeout=20)
        wait_until(lambda: plates(sub, f"{prefix}/cam/plate") == sent, timeout=20)
        assert outbox.waiting == 0
    assert len(tracebacks(caplog, "outbox failed unexpectedly")) == 1


def test_pipeline_crash_costs_only_that_read(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    subscribe: Subscribe,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A decision that raises for a read is logged with its traceback and costs only that
    read: the camera stays online and the next read is published."""
    sub = subscribe(f"{prefix}/cam/plate", f"{prefix}/cam/status")
    bridge = Bridge(settings=bridge_settings(broker, prefix, {"cam": camera_config(simulator)}))
    handle = Flaky(bridge.pipeline.handle, when=lambda item: isinstance(item, ReadIn))
    monkeypatch.setattr(bridge.pipeline, "handle", handle)
    with running(bridge):
        assert simulator.wait_for_streams(1)
        simulator.emit_read("LOST 1")
        wait_until(lambda: handle.raised == 1)
        simulator.emit_read("NEXT 1")
        sub.wait_for(f"{prefix}/cam/plate")
        assert plates(sub, f"{prefix}/cam/plate") == ["NEXT 1"]
        assert changes(sub, f"{prefix}/cam/status") == [b"online"]
        assert simulator.count("/ISAPI/Event") == 1  # the stream was not reopened
    assert len(tracebacks(caplog, "error deciding about ReadIn")) == 1
