"""What a read costs at the rates cameras really read (issue 20): lone reads, many cameras.

    python bench/lone.py [--before ../v020] [--cameras 1,8,32,64] [--seconds 20] [--rounds 3]

For each number of cameras, the bridge of this checkout (and of ``--before``, alternating
which goes first each round) runs as its own process in its **default configuration**
(the web page and its in-memory history on, Home Assistant discovery on) against one
simulator per camera and a Mosquitto started for the run. Each camera reads a plate every
2 s (0.5 reads/s), the cameras evenly staggered, with its two pictures (plate and vehicle) of
60 kB each. Measured from /proc for the bridge process:

- idle: CPU (% of a core) with every stream open and nothing read, for 5 s;
- CPU ms per read and context switches per read (voluntary + involuntary, every thread);
- p50 / p99 from the camera's last byte of a read to its arrival at an MQTT subscriber;
- RSS (MB) and threads at the end.

Prints each round and the medians; with ``--before``, the after/before ratios. A read must
reach the subscriber to count; the number delivered is printed beside each figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hik2mqtt.simulator import Simulator
from tests.conftest import Broker, Message, Subscriber, free_port, process_env

TICK = os.sysconf("SC_CLK_TCK")
INTERVAL = 2.0  # seconds between two reads of one camera
PICTURE = 60_000  # bytes, each of a read's two pictures


@dataclass
class Figures:
    idle_pct: float
    cpu_ms: float
    switches: float
    p50_ms: float
    p99_ms: float
    rss_mb: float
    threads: int
    delivered: int
    sent: int


class Bridge:
    """The bridge of a checkout as its own process, read from /proc."""

    def __init__(self, root: Path, broker: Broker, sims: dict[str, Simulator], prefix: str):
        env = process_env(
            broker,
            prefix,
            sims,
            root=root,
            page_off=False,  # the default configuration: the page and its history on
            HIK2MQTT_LOG_LEVEL="WARNING",
            HIK2MQTT_WEB__PORT=str(free_port()),
        )
        for name in sims:
            env[f"HIK2MQTT_CAMERAS__{name.upper()}__IDLE_TIMEOUT"] = "300"
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "hik2mqtt", "run"],
            env=env,
            cwd=root,
            stderr=subprocess.DEVNULL,
        )
        self.proc = Path(f"/proc/{self.popen.pid}")

    def cpu(self) -> float:
        fields = (self.proc / "stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def switches(self) -> int:
        total = 0
        for task in (self.proc / "task").iterdir():
            try:
                status = (task / "status").read_text()
            except OSError:
                continue  # a thread that just ended
            for line in status.splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
        return total

    def rss_mb(self) -> float:
        for line in (self.proc / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def threads(self) -> int:
        return len(list((self.proc / "task").iterdir()))

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()


def wait(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def once(root: Path, broker: Broker, cameras: int, seconds: float) -> Figures:
    sims = {f"c{i}": Simulator(heartbeat=None).start() for i in range(cameras)}
    prefix = f"lone{time.monotonic_ns()}"
    bridge = Bridge(root, broker, sims, prefix)
    sub = Subscriber(broker.host, broker.port, [f"{prefix}/+/plate"])
    try:
        assert wait(lambda: all(s.stream_count >= 1 for s in sims.values()), 60), "streams"
        time.sleep(2.0)  # start-up work (discovery, device info) out of the way
        cpu0, t0 = bridge.cpu(), time.perf_counter()
        time.sleep(5.0)
        idle_pct = (bridge.cpu() - cpu0) / (time.perf_counter() - t0) * 100

        # Camera i reads at i * INTERVAL / cameras, then every INTERVAL.
        names = list(sims)
        plans = sorted(
            (k * INTERVAL + i * INTERVAL / cameras, i)
            for k in range(int(seconds / INTERVAL))
            for i in range(cameras)
        )
        # A camera's writes for one read are over before its next read, 2 s later (no
        # heartbeats): its last write time then is that read's last byte.
        last_byte: dict[str, float] = {}
        pending: dict[int, str] = {}
        cpu0, switches0 = bridge.cpu(), bridge.switches()
        start = time.perf_counter()
        for n, (due, i) in enumerate(plans):
            while (now := time.perf_counter()) < start + due:
                time.sleep(min(0.01, start + due - now))
            sim = sims[names[i]]
            if i in pending:
                last_byte[pending[i]] = sim.last_write_at
            pending[i] = f"L{n:06d}"
            sim.emit_read(pending[i], picture_size=PICTURE)

        def delivered() -> list[Message]:
            return [m for name in names for m in sub.on(f"{prefix}/{name}/plate")]

        wait(lambda: len(delivered()) >= len(plans), 10)
        time.sleep(1.0)  # the last pictures go out before CPU is read
        for i, plate in pending.items():
            last_byte[plate] = sims[names[i]].last_write_at
        cpu = bridge.cpu() - cpu0
        switches = bridge.switches() - switches0
        got = delivered()
        latencies = sorted(
            (m.at - last_byte[plate]) * 1000
            for m in got
            if (plate := _plate_of(m.payload)) in last_byte
        )
        return Figures(
            idle_pct=idle_pct,
            cpu_ms=cpu * 1000 / max(1, len(got)),
            switches=switches / max(1, len(got)),
            p50_ms=_quantile(latencies, 0.5),
            p99_ms=_quantile(latencies, 0.99),
            rss_mb=bridge.rss_mb(),
            threads=bridge.threads(),
            delivered=len(got),
            sent=len(plans),
        )
    finally:
        sub.close()
        bridge.stop()
        for sim in sims.values():
            sim.stop()


def _plate_of(payload: bytes) -> str:
    start = payload.find(b'"plate":"')
    if start < 0:
        return ""
    start += len(b'"plate":"')
    return payload[start : payload.find(b'"', start)].decode()


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="a checkout to compare with (e.g. 0.2.0)")
    parser.add_argument("--cameras", default="1,8,32,64")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    checkouts = {"now": ROOT} | ({"before": args.before.resolve()} if args.before else {})
    broker = Broker()
    broker.start()
    try:
        for cameras in (int(c) for c in args.cameras.split(",")):
            results: dict[str, list[Figures]] = {who: [] for who in checkouts}
            for r in range(args.rounds):
                order = list(checkouts) if r % 2 == 0 else list(reversed(checkouts))
                for who in order:
                    figures = once(checkouts[who], broker, cameras, args.seconds)
                    results[who].append(figures)
                    print(f"{cameras:>3} cameras, round {r + 1}, {who:>6}: {_row(figures)}")
            medians = {who: _median(f) for who, f in results.items()}
            for who, figures in medians.items():
                print(f"{cameras:>3} cameras, median     {who:>6}: {_row(figures)}")
            if "before" in medians:
                now, before = medians["now"], medians["before"]
                print(
                    f"{cameras:>3} cameras, now/before: CPU per read "
                    f"{now.cpu_ms / before.cpu_ms:.2f}x, switches per read "
                    f"{now.switches / before.switches:.2f}x, idle "
                    f"{now.idle_pct / max(before.idle_pct, 1e-9):.2f}x, p99 "
                    f"{now.p99_ms / before.p99_ms:.2f}x"
                )
            sys.stdout.flush()
    finally:
        broker.close()


def _median(rounds: list[Figures]) -> Figures:
    return Figures(
        idle_pct=statistics.median(f.idle_pct for f in rounds),
        cpu_ms=statistics.median(f.cpu_ms for f in rounds),
        switches=statistics.median(f.switches for f in rounds),
        p50_ms=statistics.median(f.p50_ms for f in rounds),
        p99_ms=statistics.median(f.p99_ms for f in rounds),
        rss_mb=statistics.median(f.rss_mb for f in rounds),
        threads=int(statistics.median(f.threads for f in rounds)),
        delivered=int(statistics.median(f.delivered for f in rounds)),
        sent=rounds[0].sent,
    )


def _row(f: Figures) -> str:
    return (
        f"idle {f.idle_pct:5.2f}% core | {f.cpu_ms:5.2f} ms CPU/read | "
        f"{f.switches:5.1f} switches/read | p50 {f.p50_ms:5.2f} ms p99 {f.p99_ms:6.2f} ms | "
        f"RSS {f.rss_mb:5.1f} MB | {f.threads} threads | {f.delivered}/{f.sent} delivered"
    )


if __name__ == "__main__":
    main()
