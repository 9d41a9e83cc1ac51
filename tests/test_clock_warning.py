"""The camera-clock warning: a read the camera did not mark as retransmitted but whose camera
time is older than MAX_AGE, through the real bridge, the simulator and a real broker."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import pytest

from hik2mqtt.simulator import Simulator
from tests.conftest import (
    AnyBroker,
    RunBridge,
    Subscribe,
    bridge_settings,
    camera_config,
)


def clock_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "MAX_AGE" in r.getMessage()
    ]


def test_stale_reads_warn_once_naming_max_age(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Reads older than MAX_AGE by the bridge's clock are published retransmitted and give
    exactly one warning naming HIK2MQTT_CAMERAS__<NAME>__MAX_AGE; a read the camera itself
    marks as retransmitted gives none."""
    sub = subscribe(f"{prefix}/+/plate")
    cameras = {"gate": camera_config(simulator, max_age=60)}
    run_bridge(bridge_settings(broker, prefix, cameras))
    assert simulator.wait_for_streams(1)
    an_hour_ago = datetime.now().astimezone() - timedelta(hours=1)

    simulator.emit_read("RETX 1", taken=an_hour_ago, retransmitted=True)
    sub.wait_for(f"{prefix}/gate/plate", 1)
    assert clock_warnings(caplog) == []  # the camera said it is old: its clock is not suspect

    simulator.emit_read("OLD 1", taken=an_hour_ago)
    simulator.emit_read("OLD 2", taken=an_hour_ago)
    simulator.emit_read("NEW 1")
    sub.wait_for(f"{prefix}/gate/plate", 4)
    reads = {p["plate"]: p for p in map(json.loads, sub.payloads(f"{prefix}/gate/plate"))}
    assert [reads[p]["retransmitted"] for p in ("RETX 1", "OLD 1", "OLD 2", "NEW 1")] == [
        True,
        True,
        True,
        False,
    ]
    assert 3590 < reads["OLD 1"]["age"] < 3700
    warnings = clock_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "HIK2MQTT_CAMERAS__GATE__MAX_AGE" in warnings[0]
    assert warnings[0].startswith("camera gate:")
