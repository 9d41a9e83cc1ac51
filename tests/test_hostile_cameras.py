"""A misbehaving camera costs only itself: attacks from one camera, through the real bridge,
leave another camera publishing within a second, and the attacked camera reads again."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from hik2mqtt.simulator import Simulator
from hik2mqtt.simulator.encoders import encode_read, make_read
from tests.conftest import (
    AnyBroker,
    RunBridge,
    Subscribe,
    Subscriber,
    bridge_settings,
    camera_config,
    wait_until,
)

ATTACKS = {
    # about 1.4 kB of "<" with no Content-Length, one byte per write
    "angle brackets": (
        b"--boundary\r\nContent-Type: application/xml\r\n\r\n",
        b"<" * 1400,
    ),
    # a length that str.isdigit() accepts and int() refuses
    "superscript length": (
        b"--boundary\r\nContent-Type: application/xml\r\nContent-Length: \xb2\r\n\r\n",
        b"<a/>",
    ),
    # a length of 5,000 digits
    "huge length": (
        b"--boundary\r\nContent-Type: application/xml\r\nContent-Length: "
        + b"9" * 5000
        + b"\r\n\r\n",
        b"<a/>",
    ),
    # one read announcing 3,000 pictures
    "many pictures": (
        b"",
        encode_read(make_read("MANY1"), content_length=True).replace(
            b"<pictureInfoList>",
            b"<pictureInfoList>"
            + b"".join(
                b"<pictureInfo><fileName>p%d</fileName><type>t%d</type></pictureInfo>" % (i, i)
                for i in range(3000)
            ),
            1,
        ),
    ),
}


@pytest.fixture
def cameras() -> Iterator[tuple[Simulator, Simulator]]:
    with Simulator(heartbeat=None) as attacker, Simulator(heartbeat=None) as honest:
        yield attacker, honest


def _plates(sub: Subscriber, topic: str) -> list[str | None]:
    return [json.loads(p)["plate"] for p in sub.payloads(topic)]


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_an_attack_costs_only_the_attacking_camera(
    attack: str,
    broker: AnyBroker,
    prefix: str,
    run_bridge: RunBridge,
    subscribe: Subscribe,
    cameras: tuple[Simulator, Simulator],
) -> None:
    """While one camera sends hostile bytes, the other camera's read is published within a
    second, the bridge stays connected, and the attacker's next good read is published."""
    attacker, honest = cameras
    sub = subscribe(f"{prefix}/#")
    run_bridge(
        bridge_settings(
            broker, prefix, {"evil": camera_config(attacker), "good": camera_config(honest)}
        )
    )
    assert attacker.wait_for_streams(1)
    assert honest.wait_for_streams(1)
    sub.wait_for(f"{prefix}/good/status")
    head, body = ATTACKS[attack]
    attacker.send_raw(head)
    if attack == "angle brackets":
        for i in range(len(body)):
            attacker.send_raw(body[i : i + 1])
    else:
        attacker.send_raw(body)
    sent = time.monotonic()
    honest.emit_read("GOOD1")
    wait_until(lambda: "GOOD1" in _plates(sub, f"{prefix}/good/plate"), timeout=1.0)
    assert time.monotonic() - sent < 1.0
    assert b"offline" not in sub.payloads(f"{prefix}/bridge/status")
    # The attacked camera reads again (on the same stream, or after a reopen and backoff).
    attacker.send_raw(b"\r\n")
    deadline = time.monotonic() + 15
    while "EVIL2" not in _plates(sub, f"{prefix}/evil/plate"):
        assert time.monotonic() < deadline, _plates(sub, f"{prefix}/evil/plate")
        attacker.emit_read("EVIL2")
        sent_at = time.monotonic()
        while time.monotonic() - sent_at < 1.0 and not _plates(sub, f"{prefix}/evil/plate"):
            attacker.wait_for_streams(1, timeout=0.05)
    statuses = sub.payloads(f"{prefix}/evil/status")
    assert statuses[-1] == b"online"
