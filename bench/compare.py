"""Before/after: the bridge of two checkouts side by side, in one run, on the same broker.

    python bench/compare.py --before ../old-checkout [--rounds 5] [--reads 2000]

Each round runs, for 3 kB and 60 kB pictures, the bridge of this checkout and then the
bridge of ``--before`` (alternating which goes first), each as its own process against the
simulator and a Mosquitto started for the run, with reads sent in **bursts of 50 back to
back at 2,000 reads/s on average** (a burst every 25 ms), and reads the bridge process's
CPU time from /proc. Prints medians, every round, and the after/before ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hik2mqtt.simulator import Simulator
from hik2mqtt.simulator.encoders import encode_read, make_read
from tests.conftest import Broker, Subscriber

_spec = importlib.util.spec_from_file_location("bench_main", ROOT / "bench" / "bench.py")
assert _spec is not None and _spec.loader is not None
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)
Proc, row, wait = _bench.Proc, _bench.row, _bench.wait

BURST = 50
RATE = 2000.0


def start_bridge_of(root: Path, broker: Broker, sim: Simulator, prefix: str) -> Proc:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIK2MQTT_")}
    env.update(
        PYTHONPATH=str(root),
        HIK2MQTT_MQTT__HOST=broker.host,
        HIK2MQTT_MQTT__PORT=str(broker.port),
        HIK2MQTT_TOPIC_PREFIX=prefix,
        HIK2MQTT_LOG_LEVEL="WARNING",
        HIK2MQTT_HOMEASSISTANT__ENABLED="false",
        HIK2MQTT_CAMERAS__CAM__HOST=sim.host,
        HIK2MQTT_CAMERAS__CAM__PORT=str(sim.port),
        HIK2MQTT_CAMERAS__CAM__PASSWORD=sim.password,
        HIK2MQTT_CAMERAS__CAM__IDLE_TIMEOUT="300",
    )
    proc = Proc.__new__(Proc)
    proc.popen = subprocess.Popen(
        [sys.executable, "-m", "hik2mqtt", "run"], env=env, cwd=root, stderr=subprocess.DEVNULL
    )
    return proc


def bursts_once(root: Path, broker: Broker, n: int, size: int) -> float:
    """CPU ms per read of the bridge of ``root``, reads in bursts of 50 at 2,000/s."""
    sim = Simulator(heartbeat=None).start()
    prefix = f"c{time.monotonic_ns()}"
    proc = start_bridge_of(root, broker, sim, prefix)
    sub = Subscriber(broker.host, broker.port, [f"{prefix}/cam/plate"])
    try:
        assert sim.wait_for_streams(1, 20)
        time.sleep(0.5)
        reads = [encode_read(make_read(f"T{i}", picture_size=size)) for i in range(n)]
        cpu0 = proc.cpu()
        start = time.perf_counter()
        for i in range(0, n, BURST):
            due = start + i / RATE
            while (now := time.perf_counter()) < due:
                time.sleep(min(0.005, due - now))
            for data in reads[i : i + BURST]:
                sim.send_raw(data)
        assert wait(lambda: len(sub.on(f"{prefix}/cam/plate")) >= n, 300)
        time.sleep(0.5)  # the last pictures go out before CPU time is read
        return (proc.cpu() - cpu0) * 1000 / n
    finally:
        sub.close()
        proc.stop()
        sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reads", type=int, default=2000)
    args = parser.parse_args()
    after, before = ROOT, args.before.resolve()
    broker = Broker()
    broker.start()
    print(f"\n### Bursts of {BURST} back to back at {RATE:.0f} reads/s: CPU ms per read\n")
    print(row("picture size", "before (median)", "after (median)", "after / before", "rounds"))
    print(row("---", "---", "---", "---", "---"))
    try:
        for size in (3_000, 60_000):
            results: dict[str, list[float]] = {"before": [], "after": []}
            for i in range(args.rounds):
                order = [("after", after), ("before", before)]
                for name, root in order if i % 2 == 0 else order[::-1]:
                    results[name].append(bursts_once(root, broker, args.reads, size))
            b, a = statistics.median(results["before"]), statistics.median(results["after"])
            rounds = "; ".join(
                f"{x:.3f}/{y:.3f}" for x, y in zip(results["before"], results["after"], strict=True)
            )
            print(row(f"{size // 1000} kB", f"{b:.3f}", f"{a:.3f}", f"{a / b:.2f}", rounds))
    finally:
        broker.close()


if __name__ == "__main__":
    main()
