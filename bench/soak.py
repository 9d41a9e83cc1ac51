"""Soak: many reads through the bridge while faults are injected every few seconds.

    python bench/soak.py [--reads 100000] [--fault-every 3]

The bridge runs as its own process with an on-disk spool; a persistent MQTT session
collects what it publishes. Faults alternate between restarting the broker (which keeps
sessions on disk) and cutting the camera's stream. Reports reads the camera sent (writes
that reached its socket) against reads delivered, duplicates, order, and the bridge's RSS.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench import start_bridge, wait
from hik2mqtt.simulator import Simulator
from hik2mqtt.simulator.encoders import encode_read, make_read
from tests.conftest import Broker, Subscriber


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=100_000)
    parser.add_argument("--fault-every", type=float, default=3.0)
    args = parser.parse_args()
    broker = Broker(persistence=True)
    broker.start()
    sim = Simulator(heartbeat=None).start()
    spool = tempfile.mkdtemp(prefix="hik2mqtt-soak-")
    bridge = start_bridge(broker, {"cam": sim}, extra={"HIK2MQTT_SPOOL_DIR": spool})
    sub = Subscriber(broker.host, broker.port, ["b/cam/plate"], persistent=True)
    faults = {"broker restarts": 0, "stream cuts": 0}
    try:
        assert sim.wait_for_streams(1, 20)
        time.sleep(1)
        rss_start = bridge.rss_mb()
        # One template read; each copy gets its own plate so order and duplicates show.
        template = encode_read(make_read("S000000"))
        t0 = time.monotonic()
        next_fault = t0 + args.fault_every
        emitted = 0
        while emitted < args.reads:
            if sim.stream_count:
                for _ in range(min(50, args.reads - emitted)):
                    sim.send_raw(template.replace(b"S000000", b"S%06d" % emitted))
                    emitted += 1
            time.sleep(0.02)
            if time.monotonic() >= next_fault:
                if (faults["broker restarts"] + faults["stream cuts"]) % 2 == 0:
                    broker.stop()
                    time.sleep(0.5)
                    broker.start()
                    faults["broker restarts"] += 1
                else:
                    sim.cut_streams()
                    faults["stream cuts"] += 1
                next_fault = time.monotonic() + args.fault_every
        sending = time.monotonic() - t0
        wait(lambda: len(sub.messages) >= sim.writes, 300)
        time.sleep(2)
        got = [json.loads(m.payload)["plate"] for m in sub.messages]
        sent = sim.writes
        unique = set(got)
        seen: set[str] = set()
        firsts = [p for p in got if not (p in seen or seen.add(p))]  # first deliveries
        print("| measure | value |\n| --- | --- |")
        print(f"| reads offered to the camera | {emitted:,} |")
        print(f"| reads the camera sent (written to its socket) | {sent:,} |")
        print(f"| reads delivered (unique) | {len(unique):,} ({len(unique) / sent:.2%}) |")
        print(f"| duplicates | {len(got) - len(unique):,} |")
        print(f"| first deliveries in order | {firsts == sorted(firsts)} |")
        print(
            f"| faults | {faults['broker restarts']} broker restarts, {faults['stream cuts']} stream cuts |"
        )
        print(f"| time sending | {sending:.0f} s |")
        print(f"| bridge RSS at start / end | {rss_start:.1f} MB / {bridge.rss_mb():.1f} MB |")
    finally:
        sub.close()
        bridge.stop()
        sim.stop()
        broker.close()


if __name__ == "__main__":
    main()
