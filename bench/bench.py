"""hik2mqtt benchmarks, each side by side with the reference reader (bench/reference.py).

Run from the repository root (Mosquitto must be installed; each run starts its own):

    python bench/bench.py latency | trigger | throughput | parser | memory | scale | all

Every figure is measured in the same run for hik2mqtt and for the reference, over real
sockets: the built-in simulator plays the camera, a real Mosquitto carries the messages,
and the bridge and the reference run as their own processes so their CPU time and memory
can be read from /proc. Results are printed as Markdown; docs/PERFORMANCE.md records them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hik2mqtt.multipart import MultipartParser
from hik2mqtt.simulator import Simulator
from hik2mqtt.simulator.encoders import encode_read, heartbeat_part, make_read
from tests.conftest import Broker, Subscriber, process_env

TICK = os.sysconf("SC_CLK_TCK")


class Proc:
    """A child process whose CPU time and memory we read from /proc."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(args, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)

    def cpu(self) -> float:
        """User + system CPU seconds so far."""
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()


def start_bridge(
    broker: Broker,
    sims: dict[str, Simulator],
    prefix: str = "b",
    extra: dict[str, str] | None = None,
) -> Proc:
    # The page is off: its own cost is bench/compare.py --page.
    env = process_env(
        broker, prefix, sims, HIK2MQTT_LOG_LEVEL="WARNING", HIK2MQTT_MQTT__QUEUE_SIZE="1000000"
    )
    for name in sims:
        env[f"HIK2MQTT_CAMERAS__{name.upper()}__IDLE_TIMEOUT"] = "300"
        env[f"HIK2MQTT_CAMERAS__{name.upper()}__TRIGGER_INTERVAL"] = "0"
    env.update(extra or {})
    return Proc([sys.executable, "-m", "hik2mqtt", "run"], env)


def start_reference(broker: Broker, sims: dict[str, Simulator]) -> Proc:
    args = [
        sys.executable,
        str(ROOT / "bench" / "reference.py"),
        "--mqtt",
        f"{broker.host}:{broker.port}",
    ]
    for name, sim in sims.items():
        args += ["--camera", f"{name.lower()}={sim.host}:{sim.port}"]
    return Proc(args, dict(os.environ))


def wait(condition: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0002)
    return True


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def ms(values: list[float]) -> str:
    if not values:
        return "none delivered"
    return (
        f"p50 {statistics.median(values):.2f} / p99 {pct(values, 0.99):.2f} / "
        f"max {max(values):.2f} ms (n={len(values)})"
    )


# -- 1. lone-read latency ------------------------------------------------------------------


def bench_latency(broker: Broker, n: int) -> None:
    sims = {"b": Simulator(heartbeat=None).start(), "ref": Simulator(heartbeat=None).start()}
    bridge = start_bridge(broker, {"cam": sims["b"]})
    reference = start_reference(broker, {"cam": sims["ref"]})
    sub = Subscriber(broker.host, broker.port, ["b/cam/#", "ref/cam/#"])
    try:
        assert sims["b"].wait_for_streams(1, 20) and sims["ref"].wait_for_streams(1, 20)
        results: dict[str, dict[str, list[float]]] = {}
        held = {"b": 0, "ref": 0}
        for who, prefix in (("hik2mqtt", "b"), ("reference", "ref")):
            sim = sims[prefix]
            plate_lat: list[float] = []
            pic_plate_lat: list[float] = []
            pic_last_lat: list[float] = []
            for i in range(n):
                with_pictures = i % 2 == 1
                read = make_read(
                    f"LAT{i}",
                    kinds=("licensePlatePicture", "vehiclePicture") if with_pictures else (),
                )
                data = encode_read(read)
                plates_before = len(sub.on(f"{prefix}/cam/plate"))
                pics_before = len(
                    sub.on(
                        f"{prefix}/cam/image/vehicle" if prefix == "b" else f"{prefix}/cam/image/2"
                    )
                )
                writes = sim.writes
                sim.send_raw(data)
                assert wait(lambda: sim.writes > writes, 5)
                got = wait(lambda: len(sub.on(f"{prefix}/cam/plate")) > plates_before, 0.5)
                if got:
                    when = sub.on(f"{prefix}/cam/plate")[-1].at - sim.last_write_at
                    (pic_plate_lat if with_pictures else plate_lat).append(when * 1000)
                else:
                    held[prefix] += 1
                pic_topic = (
                    f"{prefix}/cam/image/vehicle" if prefix == "b" else f"{prefix}/cam/image/2"
                )
                if with_pictures and wait(
                    lambda: len(sub.on(pic_topic)) > pics_before, 0.5 if got else 0.01
                ):
                    pic_last_lat.append((sub.on(pic_topic)[-1].at - sim.last_write_at) * 1000)
                # flush anything a reader is holding back before the next read
                sim.send_raw(heartbeat_part())
                wait(lambda: len(sub.on(f"{prefix}/cam/plate")) > plates_before, 2)
                wait(lambda: sim.writes > writes + 1, 2)
            results[who] = {
                "plate": plate_lat,
                "pic_plate": pic_plate_lat,
                "pic_last": pic_last_lat,
            }
        print("\n### 1. Lone-read latency (last byte on the camera socket -> MQTT subscriber)\n")
        print(
            row(
                "reader",
                "read without pictures",
                "read with 2 pictures: plate",
                "read with 2 pictures: last picture",
                "reads held until more bytes came",
            )
        )
        print(row("---", "---", "---", "---", "---"))
        for who, prefix in (("hik2mqtt", "b"), ("reference", "ref")):
            r = results[who]
            print(
                row(
                    who,
                    ms(r["plate"]),
                    ms(r["pic_plate"]),
                    ms(r["pic_last"]),
                    f"{held[prefix]} of {n} (waited 0.5 s each)",
                )
            )
    finally:
        sub.close()
        bridge.stop()
        reference.stop()
        for sim in sims.values():
            sim.stop()


# -- 2. trigger latency --------------------------------------------------------------------


def bench_trigger(broker: Broker, n: int) -> None:
    sims = {"b": Simulator(heartbeat=None).start(), "ref": Simulator(heartbeat=None).start()}
    bridge = start_bridge(broker, {"cam": sims["b"]})
    reference = start_reference(broker, {"cam": sims["ref"]})
    sub = Subscriber(broker.host, broker.port, ["b/cam/trigger/result"])
    try:
        assert sims["b"].wait_for_streams(1, 20) and sims["ref"].wait_for_streams(1, 20)
        time.sleep(1)  # let the reference subscribe (it has no status topic to wait on)
        lines = []
        for who, prefix in (("hik2mqtt", "b"), ("reference", "ref")):
            sim = sims[prefix]
            lat = []
            for _ in range(n):
                before = sim.count("/ISAPI/Traffic/MNPR")
                t0 = time.perf_counter()
                sub.client.publish(f"{prefix}/cam/trigger", "", qos=1)
                if wait(lambda: sim.count("/ISAPI/Traffic/MNPR") > before, 5):
                    last = [
                        r
                        for r in sim.requests
                        if r.path.startswith("/ISAPI/Traffic/MNPR") and r.authorized
                    ][-1]
                    lat.append((last.at - t0) * 1000)
                wait(lambda: prefix != "b" or len(sub.on("b/cam/trigger/result")) >= len(lat), 5)
                time.sleep(0.005)
            lines.append(row(who, ms(lat)))
        print(
            "\n### 2. Trigger latency (publish on trigger -> authorised MNPR request at the camera)\n"
        )
        print(row("reader", "latency"))
        print(row("---", "---"))
        print("\n".join(lines))
    finally:
        sub.close()
        bridge.stop()
        reference.stop()
        for sim in sims.values():
            sim.stop()


# -- 3. sustained throughput ---------------------------------------------------------------


def measure_reads(
    proc: Proc,
    sim: Simulator,
    sub: Subscriber,
    topic: str,
    *,
    n: int,
    size: int,
    burst: int | None = None,
    rate: float = 2000.0,
) -> tuple[float, float]:
    """Send ``n`` reads with two pictures of ``size`` bytes: all back to back, or in bursts
    of ``burst`` at ``rate`` reads/s on average; wait for all on ``topic``. Returns reads/s
    end to end and the reader process's CPU ms per read."""
    assert sim.wait_for_streams(1, 20)
    time.sleep(0.5)
    reads = [encode_read(make_read(f"T{i}", picture_size=size)) for i in range(n)]
    cpu0 = proc.cpu()
    t0 = time.perf_counter()
    step = burst or n
    for i in range(0, n, step):
        due = t0 + i / rate if burst else t0
        while (now := time.perf_counter()) < due:
            time.sleep(min(0.005, due - now))
        for data in reads[i : i + step]:
            sim.send_raw(data)
    sim.send_raw(heartbeat_part())  # the reference needs a following part to end a picture
    assert wait(lambda: len(sub.on(topic)) >= n, 300), len(sub.on(topic))
    elapsed = sub.on(topic)[-1].at - t0
    time.sleep(0.5)  # let the last pictures go out before reading CPU time
    return n / elapsed, (proc.cpu() - cpu0) * 1000 / n


def throughput_once(broker: Broker, who: str, n: int, size: int) -> tuple[float, float]:
    sim = Simulator(heartbeat=None).start()
    prefix = "b" if who == "hik2mqtt" else "ref"
    proc = (
        start_bridge(broker, {"cam": sim})
        if who == "hik2mqtt"
        else start_reference(broker, {"cam": sim})
    )
    sub = Subscriber(broker.host, broker.port, [f"{prefix}/cam/plate"])
    try:
        return measure_reads(proc, sim, sub, f"{prefix}/cam/plate", n=n, size=size)
    finally:
        sub.close()
        proc.stop()
        sim.stop()


def bench_throughput(broker: Broker, n: int) -> None:
    print("\n### 3. Sustained throughput (reads with 2 pictures, sent back to back)\n")
    print(
        row(
            "picture size",
            "reader",
            "reads/s end to end",
            "CPU ms per read (reader process)",
            "CPU ratio reference / hik2mqtt",
        )
    )
    print(row("---", "---", "---", "---", "---"))
    for size in (3_000, 60_000):
        count = n if size < 10_000 else max(200, n // 4)
        ours = [throughput_once(broker, "hik2mqtt", count, size) for _ in range(3)]
        ref = [throughput_once(broker, "reference", count, size) for _ in range(3)]
        o_rate, o_cpu = statistics.median(r for r, _ in ours), statistics.median(c for _, c in ours)
        r_rate, r_cpu = statistics.median(r for r, _ in ref), statistics.median(c for _, c in ref)
        print(
            row(
                f"{size // 1000} kB",
                "hik2mqtt",
                f"{o_rate:.0f}",
                f"{o_cpu:.3f} (runs: {', '.join(f'{c:.3f}' for _, c in ours)})",
                f"{r_cpu / o_cpu:.1f}x",
            )
        )
        print(
            row(
                f"{size // 1000} kB",
                "reference",
                f"{r_rate:.0f}",
                f"{r_cpu:.3f} (runs: {', '.join(f'{c:.3f}' for _, c in ref)})",
                "",
            )
        )


# -- 4. parser throughput ------------------------------------------------------------------


def reference_framing(stream: bytes, piece: int) -> int:
    """The reference's framing alone: bytes buffer, scan for the next delimiter."""
    delimiter = b"--boundary"
    buf = b""
    parts = 0
    for i in range(0, len(stream), piece):
        buf += stream[i : i + piece]
        while True:
            start = buf.find(delimiter)
            end = buf.find(delimiter, start + len(delimiter)) if start >= 0 else -1
            if end < 0:
                break
            parts += 1
            buf = buf[end:]
    return parts


def ours_framing(stream: bytes, piece: int) -> int:
    parser = MultipartParser("boundary")
    view = memoryview(stream)
    parts = 0
    for i in range(0, len(stream), piece):
        parts += len(parser.feed(bytes(view[i : i + piece])))
    return parts


def bench_parser(reads: int) -> None:
    for content_length in (True, False):
        stream = b"".join(
            encode_read(
                make_read(f"P{i}", picture_size=60_000, marker=b""), content_length=content_length
            )
            for i in range(reads)
        )
        stream += heartbeat_part(content_length=content_length)
        mb = len(stream) / 1e6
        framing = (
            "with Content-Length"
            if content_length
            else "without Content-Length: XML closed by its root element, pictures by the delimiter"
        )
        print(
            f"\n### 4. Parser throughput (framing only; {reads} reads with two 60 kB pictures,"
            f" {mb:.0f} MB, {framing})\n"
        )
        print(
            row(
                "piece size", "hik2mqtt MB/s (median of 5)", "reference MB/s (median of 5)", "ratio"
            )
        )
        print(row("---", "---", "---", "---"))
        for piece in (64 * 1024, 1024, 64):
            speeds = {}
            for name, fn in (("ours", ours_framing), ("ref", reference_framing)):
                runs = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    parts = fn(stream, piece)
                    runs.append(mb / (time.perf_counter() - t0))
                assert parts >= reads * 3, (name, parts)
                speeds[name] = statistics.median(runs)
            print(
                row(
                    f"{piece // 1024} kB" if piece >= 1024 else f"{piece} B",
                    f"{speeds['ours']:.0f}",
                    f"{speeds['ref']:.0f}",
                    f"{speeds['ours'] / speeds['ref']:.1f}x",
                )
            )


# -- 5. memory -----------------------------------------------------------------------------


def bench_memory(broker: Broker, total: int) -> None:
    print(
        f"\n### 5. Memory (RSS of the reader process; 10 cameras, {total:,} reads with 2 small pictures)\n"
    )
    print(
        row(
            "reader",
            "1 camera, idle",
            "10 cameras connected",
            f"after {total // 2:,} reads",
            f"after {total:,} reads",
        )
    )
    print(row("---", "---", "---", "---", "---"))
    for who in ("hik2mqtt", "reference"):
        prefix = "b" if who == "hik2mqtt" else "ref"
        one = Simulator(heartbeat=None).start()
        proc = (
            start_bridge(broker, {"CAM0": one})
            if who == "hik2mqtt"
            else start_reference(broker, {"cam0": one})
        )
        assert one.wait_for_streams(1, 20)
        time.sleep(1)
        single = proc.rss_mb()
        proc.stop()
        one.stop()
        sims = {f"CAM{i}": Simulator(heartbeat=None).start() for i in range(10)}
        proc = start_bridge(broker, sims) if who == "hik2mqtt" else start_reference(broker, sims)
        sub = Subscriber(broker.host, broker.port, [f"{prefix}/+/plate"])
        try:
            for sim in sims.values():
                assert sim.wait_for_streams(1, 30)
            time.sleep(1)
            marks = [proc.rss_mb()]
            data = encode_read(make_read("MEM 1"))
            per_camera = total // len(sims)
            for half in (1, 2):
                for _ in range(per_camera // 2):
                    for sim in sims.values():
                        sim.send_raw(data)
                for sim in sims.values():
                    sim.send_raw(heartbeat_part())
                assert wait(lambda: len(sub.messages) >= half * total // 2, 300), len(sub.messages)
                time.sleep(1)
                marks.append(proc.rss_mb())
            print(row(who, f"{single:.1f} MB", *(f"{m:.1f} MB" for m in marks)))
        finally:
            sub.close()
            proc.stop()
            for sim in sims.values():
                sim.stop()


# -- 6. scale ------------------------------------------------------------------------------


def bench_scale(broker: Broker, window: float) -> None:
    print(
        f"\n### 6. Scale (CPU and RSS of the reader process over {window:.0f} s; one read/s per camera)\n"
    )
    print(
        row("cameras", "reader", "idle CPU %", "CPU % at 1 read/s each", "CPU ms per read", "RSS")
    )
    print(row("---", "---", "---", "---", "---", "---"))
    for count in (1, 10, 100):
        for who in ("hik2mqtt", "reference"):
            sims = {f"CAM{i}": Simulator(heartbeat=10.0).start() for i in range(count)}
            proc = (
                start_bridge(broker, sims) if who == "hik2mqtt" else start_reference(broker, sims)
            )
            try:
                for sim in sims.values():
                    assert sim.wait_for_streams(1, 60)
                time.sleep(2)
                c0 = proc.cpu()
                time.sleep(window)
                idle = (proc.cpu() - c0) / window * 100
                data = encode_read(make_read("SCALE 1"))
                c0 = proc.cpu()
                t0 = time.monotonic()
                sent = 0
                while time.monotonic() - t0 < window:
                    for sim in sims.values():
                        sim.send_raw(data)
                    sent += count
                    time.sleep(max(0.0, 1.0 - (time.monotonic() - t0) % 1.0))
                busy_cpu = proc.cpu() - c0
                busy = busy_cpu / window * 100
                print(
                    row(
                        count,
                        who,
                        f"{idle:.2f}",
                        f"{busy:.1f}",
                        f"{busy_cpu * 1000 / sent:.3f}",
                        f"{proc.rss_mb():.1f} MB",
                    )
                )
            finally:
                proc.stop()
                for sim in sims.values():
                    sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "which", choices=["latency", "trigger", "throughput", "parser", "memory", "scale", "all"]
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    args = parser.parse_args()
    quick = args.quick
    from importlib.metadata import version

    libs = ", ".join(
        f"{lib} {version(lib)}" for lib in ("paho-mqtt", "requests", "urllib3", "xmltodict")
    )
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; "
        f"Python {platform.python_version()}; {libs}; "
        f"{subprocess.run(['mosquitto', '-h'], capture_output=True, text=True).stdout.splitlines()[0]}"
    )
    broker = Broker()
    broker.start()
    try:
        which = args.which
        if which in ("latency", "all"):
            bench_latency(broker, 40 if quick else 200)
        if which in ("trigger", "all"):
            bench_trigger(broker, 20 if quick else 200)
        if which in ("throughput", "all"):
            bench_throughput(broker, 500 if quick else 5000)
        if which in ("parser", "all"):
            bench_parser(20 if quick else 200)
        if which in ("memory", "all"):
            bench_memory(broker, 2_000 if quick else 100_000)
        if which in ("scale", "all"):
            bench_scale(broker, 3.0 if quick else 10.0)
    finally:
        broker.close()


if __name__ == "__main__":
    main()
