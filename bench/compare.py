"""Before/after: the bridge of two checkouts side by side, in one run, on the same broker.

    python bench/compare.py --before ../old-checkout [--rounds 5] [--reads 2000]
    python bench/compare.py --page    # this checkout: web page + history on vs off

With ``--page``: this checkout with the page off and with the page and a SQLite history
on, side by side: CPU per read in the same bursts, then reads/s (and CPU per read) with
the reads sent back to back as fast as the simulator can; then the time from a read's
arrival at an MQTT subscriber to its arrival on an open page's live feed.

Each round runs, for 3 kB and 60 kB pictures, the bridge of this checkout and then the
bridge of ``--before`` (alternating which goes first), each as its own process against the
simulator and a Mosquitto started for the run, with reads sent in **bursts of 50 back to
back at 2,000 reads/s on average** (a burst every 25 ms), and reads the bridge process's
CPU time from /proc. Prints medians, every round, and the after/before ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hik2mqtt.simulator import Simulator
from hik2mqtt.simulator.encoders import encode_read, make_read
from tests.conftest import Broker, Subscriber, process_env

_spec = importlib.util.spec_from_file_location("bench_main", ROOT / "bench" / "bench.py")
assert _spec is not None and _spec.loader is not None
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)
Proc, row, wait = _bench.Proc, _bench.row, _bench.wait  # shared with bench.py

BURST = 50
RATE = 2000.0


def start_bridge_of(
    root: Path, broker: Broker, sim: Simulator, prefix: str, extra: dict[str, str] | None = None
) -> Proc:
    env = process_env(
        broker,
        prefix,
        {"cam": sim},
        root=root,
        page_off=(root / "hik2mqtt" / "web").is_dir(),  # a checkout with the page: off
        HIK2MQTT_LOG_LEVEL="WARNING",
        HIK2MQTT_HOMEASSISTANT__ENABLED="false",
        HIK2MQTT_CAMERAS__CAM__IDLE_TIMEOUT="300",
    )
    env.update(extra or {})
    proc = Proc.__new__(Proc)
    proc.popen = subprocess.Popen(
        [sys.executable, "-m", "hik2mqtt", "run"], env=env, cwd=root, stderr=subprocess.DEVNULL
    )
    return proc


def bursts_once(
    root: Path,
    broker: Broker,
    n: int,
    size: int,
    extra: dict[str, str] | None = None,
    *,
    burst: int | None = BURST,
) -> tuple[float, float]:
    """Reads/s end to end and CPU ms per read of the bridge of ``root``: reads in bursts of
    ``burst`` at 2,000/s, or all back to back (``burst=None``)."""
    sim = Simulator(heartbeat=None).start()
    prefix = f"c{time.monotonic_ns()}"
    proc = start_bridge_of(root, broker, sim, prefix, extra)
    sub = Subscriber(broker.host, broker.port, [f"{prefix}/cam/plate"])
    try:
        topic = f"{prefix}/cam/plate"
        measured = _bench.measure_reads(
            proc, sim, sub, topic, n=n, size=size, burst=burst, rate=RATE
        )
        return float(measured[0]), float(measured[1])
    finally:
        sub.close()
        proc.stop()
        sim.stop()


def page_latency(broker: Broker, n: int) -> list[float]:
    """Milliseconds from a read's arrival at an MQTT subscriber to its arrival on an open
    page's live feed (server-sent events), for ``n`` reads one at a time."""
    sim = Simulator(heartbeat=None).start()
    prefix = f"l{time.monotonic_ns()}"
    port = _free_port()
    proc = start_bridge_of(ROOT, broker, sim, prefix, {"HIK2MQTT_WEB__PORT": str(port)})
    sub = Subscriber(broker.host, broker.port, [f"{prefix}/cam/plate"])
    seen: dict[str, float] = {}
    try:
        assert sim.wait_for_streams(1, 20)
        assert wait(lambda: _answers(port), 20)
        feed = socket.create_connection(("127.0.0.1", port), timeout=30)
        feed.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        feed.sendall(b"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        reader = threading.Thread(target=_read_feed, args=(feed, seen), daemon=True)
        reader.start()
        assert wait(lambda: "cameras" in seen, 10)
        out = []
        for i in range(n):
            plate = f"L{i:05d}"
            sim.send_raw(encode_read(make_read(plate, picture_size=3000)))
            assert wait(lambda: plate in seen and len(sub.on(f"{prefix}/cam/plate")) > i, 10)
            out.append((seen[plate] - sub.on(f"{prefix}/cam/plate")[i].at) * 1000)
        feed.close()
        return out
    finally:
        sub.close()
        proc.stop()
        sim.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _read_feed(feed: socket.socket, seen: dict[str, float]) -> None:
    buffer = b""
    while True:
        try:
            data = feed.recv(65536)
        except OSError:
            return
        if not data:
            return
        now = time.perf_counter()
        buffer += data
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            if b"event: cameras" in event:
                seen["cameras"] = now
            for line in event.split(b"\n"):
                if line.startswith(b"data: ") and b'"plate"' in line:
                    plate = json.loads(line[6:]).get("plate")
                    if isinstance(plate, str):
                        seen[plate] = now


def page_side_by_side(broker: Broker, rounds: int, reads: int) -> None:
    """This checkout without the page, and with the page and a SQLite history."""
    history = Path(tempfile.mkdtemp(prefix="hik2mqtt-bench-history-"))
    with_page = {"HIK2MQTT_WEB__PORT": str(_free_port()), "HIK2MQTT_HISTORY__DIR": str(history)}
    print(
        f"\n### The page and its history: CPU ms per read in bursts of {BURST} at {RATE:.0f} "
        "reads/s, and reads/s (and CPU) with reads back to back\n"
    )
    print(
        row(
            "picture size",
            "measure",
            "page off (median)",
            "page + history (median)",
            "on / off (medians)",
            "on / off (median of each round's)",
            "rounds (off/on)",
        )
    )
    print(row("---", "---", "---", "---", "---", "---", "---"))
    modes: list[tuple[int | None, list[tuple[str, int]]]] = [
        (BURST, [("CPU ms/read, bursts", 1)]),
        (None, [("reads/s, back to back", 0), ("CPU ms/read, back to back", 1)]),
    ]
    for size in (3_000, 60_000):
        for burst, shown in modes:
            off: list[tuple[float, float]] = []
            on: list[tuple[float, float]] = []
            for i in range(rounds):
                order = [(off, None), (on, with_page)]
                for results, extra in order if i % 2 == 0 else order[::-1]:
                    results.append(bursts_once(ROOT, broker, reads, size, extra, burst=burst))
            for name, k in shown:  # k: 0 reads/s, 1 CPU ms per read
                xs, ys = [r[k] for r in off], [r[k] for r in on]
                a, b = statistics.median(xs), statistics.median(ys)
                f = ".0f" if k == 0 else ".3f"
                each = "; ".join(f"{x:{f}}/{y:{f}}" for x, y in zip(xs, ys, strict=True))
                # Each round runs both, one right after the other: its own ratio is spared
                # the drift between rounds (the machine's other work), so it is steadier.
                paired = statistics.median(y / x for x, y in zip(xs, ys, strict=True))
                cells = (f"{a:{f}}", f"{b:{f}}", f"{b / a:.2f}", f"{paired:.2f}", each)
                print(row(f"{size // 1000} kB", name, *cells))
    lat = page_latency(broker, 200)
    print(
        f"\nRead on the MQTT subscriber -> the same read on an open page's live feed: "
        f"p50 {statistics.median(lat):.1f} ms, p99 {_bench.pct(lat, 0.99):.1f} ms, "
        f"max {max(lat):.1f} ms (n={len(lat)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="the other checkout")
    parser.add_argument("--page", action="store_true", help="page and history on vs off")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reads", type=int, default=2000)
    args = parser.parse_args()
    broker = Broker()
    broker.start()
    if args.page:
        try:
            page_side_by_side(broker, args.rounds, args.reads)
        finally:
            broker.close()
        return
    if args.before is None:
        parser.error("--before or --page")
    after, before = ROOT, args.before.resolve()
    print(f"\n### Bursts of {BURST} back to back at {RATE:.0f} reads/s: CPU ms per read\n")
    print(row("picture size", "before (median)", "after (median)", "after / before", "rounds"))
    print(row("---", "---", "---", "---", "---"))
    try:
        for size in (3_000, 60_000):
            results: dict[str, list[float]] = {"before": [], "after": []}
            for i in range(args.rounds):
                order = [("after", after), ("before", before)]
                for name, root in order if i % 2 == 0 else order[::-1]:
                    results[name].append(bursts_once(root, broker, args.reads, size)[1])
            b, a = statistics.median(results["before"]), statistics.median(results["after"])
            rounds = "; ".join(
                f"{x:.3f}/{y:.3f}" for x, y in zip(results["before"], results["after"], strict=True)
            )
            print(row(f"{size // 1000} kB", f"{b:.3f}", f"{a:.3f}", f"{a / b:.2f}", rounds))
    finally:
        broker.close()


if __name__ == "__main__":
    main()
