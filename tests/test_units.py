"""Small pure pieces: backoff, topics and paths, settings, the picture folder."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import pytest

from hik2mqtt.backoff import auth_delay, reconnect_delay
from hik2mqtt.config import load_settings
from hik2mqtt.errors import ConfigError
from hik2mqtt.events import PlateRead, decode
from hik2mqtt.images import ImageFolder, picture_path, safe_file_part
from hik2mqtt.simulator.encoders import make_read
from hik2mqtt.topics import Topics


def test_reconnect_delay_is_capped_and_jittered() -> None:
    """First retry within a second; never more than the 4 s cap; jitter within [half, all]."""
    assert 0.25 <= reconnect_delay(0) <= 0.5
    assert reconnect_delay(0, rand=lambda: 0.0) == 0.25
    assert reconnect_delay(50, rand=lambda: 1.0) == 4.0
    assert reconnect_delay(50, rand=lambda: 0.0) == 2.0
    assert [reconnect_delay(n, rand=lambda: 1.0) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_auth_delay_waits_a_minute_doubling_to_ten() -> None:
    """A refused login waits at least 60 s, doubling up to 600 s, and out-waits a lock."""
    assert [auth_delay(n) for n in (1, 2, 3, 4, 5, 20)] == [60, 120, 240, 480, 600, 600]
    assert auth_delay(1, unlock_time=210) == 211


def test_topics() -> None:
    """Topic names, and the camera level of a trigger topic."""
    topics = Topics("site/anpr")
    assert topics.plate("gate") == "site/anpr/gate/plate"
    assert topics.image("gate", "plate") == "site/anpr/gate/image/plate"
    assert topics.command_subscriptions[0] == "site/anpr/+/trigger"
    assert topics.parse_command("site/anpr/gate/output/2/set") == ("gate", "output", "2")
    assert topics.parse_command("site/anpr/gate/barrier/set") == ("gate", "barrier", None)
    assert topics.parse_command("site/anpr/gate/output/2") is None
    assert topics.camera_of_trigger("site/anpr/gate/trigger") == "gate"
    assert topics.camera_of_trigger("site/anpr/gate/trigger/result") is None
    assert topics.camera_of_trigger("other/gate/trigger") is None


def test_picture_path_never_leaves_the_folder(tmp_path: Path) -> None:
    """Camera text (plate, kind, camera) can't choose the path: it is reduced to safe parts."""
    read = decode(make_read("../../etc/passwd").xml)
    assert isinstance(read, PlateRead)
    when = datetime(2026, 1, 2, 3, 4, 5, 678000)
    path = picture_path(tmp_path, camera="../x", read=read, kind="../../k", received=when)
    assert path == tmp_path / "x" / "2026-01-02" / "030405-678_etc_passwd_k.jpg"
    assert safe_file_part("京A12345", fallback="u") == "京A12345"
    assert safe_file_part("///", fallback="unknown") == "unknown"


def test_image_folder_writes_atomically_and_prunes(tmp_path: Path) -> None:
    """Pictures are written whole; old ones (and folders left empty) are deleted."""
    folder = ImageFolder(tmp_path, keep_days=1)
    old = tmp_path / "cam" / "2020-01-01" / "old.jpg"
    new = tmp_path / "cam" / "2026-01-01" / "new.jpg"
    assert folder.write(old, b"old")
    assert folder.write(new, b"new")
    past = time.time() - 3 * 86400
    os.utime(old, (past, past))
    assert folder.prune() == 1
    assert not old.parent.exists()
    assert new.read_bytes() == b"new"
    assert [p.name for p in new.parent.iterdir()] == ["new.jpg"]  # no temp files left
    assert not folder.write(tmp_path.parent / "outside.jpg", b"x")


def test_settings_defaults_and_camera_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS defaults to port 443, names are lower-cased, `bridge` is reserved."""
    for key in list(os.environ):
        if key.startswith("HIK2MQTT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HIK2MQTT_CAMERAS__Gate__HOST", "cam.local")
    monkeypatch.setenv("HIK2MQTT_CAMERAS__GATE__PASSWORD", "pw")
    monkeypatch.setenv("HIK2MQTT_CAMERAS__GATE__HTTPS", "true")
    settings = load_settings(None)
    assert list(settings.cameras) == ["gate"]
    assert settings.cameras["gate"].port == 443
    assert settings.cameras["gate"].base_url == "https://cam.local:443"
    assert "pw" not in repr(settings)
    monkeypatch.setenv("HIK2MQTT_CAMERAS__BRIDGE__HOST", "x")
    monkeypatch.setenv("HIK2MQTT_CAMERAS__BRIDGE__PASSWORD", "y")
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    assert info.value.problems == [
        "HIK2MQTT_CAMERAS__BRIDGE: 'bridge' is reserved for the bridge's own topics"
    ]


def test_a_full_spool_drops_the_properties_of_the_rows_it_drops() -> None:
    """While the broker is away a spool of 5 rows takes 50 reads: it keeps the newest 5,
    and the MQTT 5 properties kept beside them stay at 5 too (no leak per read)."""
    import threading

    from hik2mqtt.mqtt import JSON, expiring
    from hik2mqtt.outbox import Outbox
    from hik2mqtt.spool import MemorySpool

    class AwayLink:  # the broker is away: nothing is ever published
        connected = threading.Event()

        def publish(self, *_args: object, **_kw: object) -> None:
            raise AssertionError("published while the broker is away")

        def refuses(self, _topic: str) -> bool:
            return False

    outbox = Outbox(link=AwayLink(), spool=MemorySpool(max_rows=5))  # type: ignore[arg-type]
    for i in range(50):
        outbox.read(f"anpr/c/plate{i}", b"{}", expiring(JSON, 60, camera="c", event_id=str(i)))
    assert outbox.waiting == 5
    assert len(outbox._row_props) == 5
