"""Web page figures: live-feed latency, search over 100,000 reads, first page load, and the
cost a read adds on the bridge's thread.

    python bench/bench_web.py [--reads 100000] [--live 2000]

- live: a read handed to ``WebService.read()`` until its SSE line arrives at an open feed
  (an HTTP client on loopback, like a page's EventSource), p50/p99.
- search: a SQLite history of N reads (5 cameras, 30 days, random plates, 2 % on a list),
  each kind of search repeated, p50/p95.
- page: the first load as the browser does it (/, app.js, style.css, /api/session,
  /api/cameras) over HTTP, and in headless Chromium (navigation to load event) when
  Debian's chromium is installed.
- bridge cost: CPU per ``WebService.published()`` call (the history's queue; no page open)
  and the history writer's share, next to building the read's JSON payload, which the
  bridge does anyway (a ratio).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import string
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests

from hik2mqtt.events import PlateRead, decode
from hik2mqtt.payloads import plate_payload
from hik2mqtt.simulator import make_read
from hik2mqtt.web.demo import CHROMEDRIVER, CHROMIUM, FakeBackend, camera, record
from hik2mqtt.web.history import History, Query
from hik2mqtt.web.server import WebService


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def plate(rng: random.Random) -> str:
    letters = string.ascii_uppercase
    return (
        "".join(rng.choices(letters, k=2))
        + "".join(rng.choices(string.digits, k=2))
        + "".join(rng.choices(letters, k=3))
    )


def bench_live(count: int) -> dict[str, float]:
    backend = FakeBackend(views=[camera("gate")])
    service = WebService(backend=backend, host="127.0.0.1", port=0, password=None)
    service.start()
    sent: dict[int, float] = {}
    arrived: dict[int, float] = {}
    ready = threading.Event()
    done = threading.Event()

    def listen() -> None:
        sock = socket.create_connection(("127.0.0.1", service.port))
        sock.sendall(b"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        buffer = b""
        while not done.is_set():
            chunk = sock.recv(65536)
            if not chunk:
                break
            now = time.perf_counter()
            buffer += chunk
            if b"event: cameras" in buffer:
                ready.set()
            while b"\n\n" in buffer:
                message, buffer = buffer.split(b"\n\n", 1)
                for line in message.split(b"\n"):
                    if line.startswith(b"data: {") and b'"plate"' in line:
                        read_id = json.loads(line[6:])["id"]
                        arrived[read_id] = now
            if len(arrived) >= count:
                done.set()
        sock.close()

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(10)
    for n in range(count):
        rec = record("gate", f"LV{n:05d}")
        t = time.perf_counter()
        stored = service.read(rec)
        sent[stored.id] = t
        time.sleep(0.002)  # reads arrive one by one, as cars do (500/s here)
    done.wait(30)
    service.stop()
    latencies = [arrived[i] - sent[i] for i in sent if i in arrived]
    return {
        "received": len(latencies),
        "p50": statistics.median(latencies),
        "p99": pct(latencies, 99),
    }


def bench_live_browser(count: int) -> dict[str, float] | None:
    """A read handed to WebService.read() until its item is in an open page's DOM."""
    if not (CHROMIUM and CHROMEDRIVER):
        return None
    from hik2mqtt.web.demo import chromium, quit_chromium

    backend = FakeBackend(views=[camera("gate")])
    service = WebService(backend=backend, host="127.0.0.1", port=0, password=None)
    service.start()
    driver = chromium()
    sent: dict[int, float] = {}
    try:
        driver.get(f"http://127.0.0.1:{service.port}/")
        deadline = time.monotonic() + 15
        while not driver.find_elements("css selector", "#feed.open"):
            if time.monotonic() > deadline:
                raise SystemExit("the page's live feed did not open")
            time.sleep(0.05)
        driver.execute_script(
            "window.seen = {};"
            "new MutationObserver(ms => { const t = Date.now();"
            " for (const m of ms) for (const n of m.addedNodes)"
            "  if (n.dataset && n.dataset.id) window.seen[n.dataset.id] = t; })"
            ".observe(document.getElementById('reads'), {childList: true});"
        )
        for n in range(count):
            t = time.time()
            stored = service.read(record("gate", f"BR{n:05d}"))
            sent[stored.id] = t
            time.sleep(0.02)  # 50 reads/s
        time.sleep(1)
        seen = driver.execute_script("return window.seen")
    finally:
        quit_chromium(driver)
        service.stop()
    latencies = [seen[str(i)] / 1000 - t for i, t in sent.items() if str(i) in seen]
    return {
        "received": len(latencies),
        "p50": statistics.median(latencies),
        "p99": pct(latencies, 99),
    }


def fill(history: History, count: int, rng: random.Random) -> list[str]:
    now = datetime.now().astimezone()
    plates = [plate(rng) for _ in range(count // 3)]  # cars come back: ~3 reads per plate
    for n in range(count):
        p = rng.choice(plates)
        history.add(
            record(
                f"cam{n % 5}",
                p,
                received=now - timedelta(seconds=(count - n) * 30 * 86400 / count),
                match="allow" if n % 50 == 0 else None,
                duplicate=n % 17 == 0,
                retransmitted=n % 97 == 0,
                gate=(n % 50 == 0, "on list") if n % 5 == 0 else None,
            )
        )
        if n % 5000 == 0:
            history.flush(60)
    history.flush(120)
    return plates


def bench_search(count: int) -> dict[str, dict[str, float]]:
    rng = random.Random(13)
    with tempfile.TemporaryDirectory() as folder:
        history = History(Path(folder), keep_days=365)
        history.start()
        started = time.perf_counter()
        plates = fill(history, count, rng)
        fill_time = time.perf_counter() - started
        now = datetime.now().astimezone()
        kinds = {
            "newest page": lambda: Query(limit=50),
            "plate exact": lambda: Query(plate=rng.choice(plates).lower()),
            "plate tolerance 1": lambda: Query(plate=rng.choice(plates), tolerance=1),
            "plate tolerance 2": lambda: Query(plate=rng.choice(plates), tolerance=2),
            "camera + day": lambda: Query(
                camera="cam3",
                since=now - timedelta(days=rng.randint(2, 29)),
                until=now - timedelta(days=1),
            ),
            "list + gate open": lambda: Query(list="allow", gate=True),
            "flags, page 5": lambda: Query(duplicate=True, cursor=count - 5 * 50 * 17),
        }
        out: dict[str, dict[str, float]] = {}
        for name, make in kinds.items():
            times = []
            for _ in range(100):
                query = make()
                t = time.perf_counter()
                history.search(query)
                times.append(time.perf_counter() - t)
            out[name] = {"p50": statistics.median(times), "p95": pct(times, 95)}
        out["(fill)"] = {"p50": fill_time / count, "p95": fill_time}
        history.close()
    return out


def bench_page(runs: int) -> dict[str, float]:
    backend = FakeBackend(views=[camera("gate"), camera("exit")])
    service = WebService(backend=backend, host="127.0.0.1", port=0, password=None)
    service.start()
    base = f"http://127.0.0.1:{service.port}"
    times = []
    for _ in range(runs):
        session = requests.Session()
        t = time.perf_counter()
        for path in ("/", "/static/app.js", "/static/style.css", "/api/session", "/api/cameras"):
            session.get(base + path, timeout=5).raise_for_status()
        times.append(time.perf_counter() - t)
        session.close()
    result = {"http p50": statistics.median(times), "http p95": pct(times, 95)}
    if CHROMIUM and CHROMEDRIVER:
        from hik2mqtt.web.demo import chromium, quit_chromium

        driver = chromium()
        try:
            loads = []
            for _ in range(min(runs, 20)):
                driver.get("about:blank")
                driver.get(base + "/")
                loads.append(
                    driver.execute_script(
                        "const n = performance.getEntriesByType('navigation')[0];"
                        "return n.loadEventEnd - n.startTime;"
                    )
                    / 1000
                )
            result["chromium p50"] = statistics.median(loads)
            result["chromium p95"] = pct(loads, 95)
        finally:
            quit_chromium(driver)
    service.stop()
    return result


def bench_bridge_cost(count: int) -> dict[str, float]:
    """CPU on the bridge's thread: WebService.published() (what the page's observer calls
    for each read) vs building the read's payload, which the bridge does anyway."""
    read = decode(make_read("AB12CDE").xml)
    assert isinstance(read, PlateRead)
    received = datetime.now().astimezone()
    images = {"plate": {"topic": "anpr/gate/image/plate", "file": "/pictures/gate/p.jpg"}}
    t = time.process_time()
    for _ in range(count):
        plate_payload(camera="gate", read=read, source="stream", received=received, images=images)
    payload_cost = (time.process_time() - t) / count
    published = [
        plate_payload(
            camera="gate",
            read=read,
            source="stream",
            received=received,
            images=images,
            extra={"normalized": f"BC{n:06d}", "match": None, "duplicate": False},
        )
        for n in range(count)
    ]
    docs = [json.loads(payload) for payload in published]
    with tempfile.TemporaryDirectory() as folder:
        backend = FakeBackend(views=[camera("gate")])
        service = WebService(
            backend=backend, host="127.0.0.1", port=0, password=None, history_dir=Path(folder)
        )
        service.start()
        t = time.process_time()
        started = time.perf_counter()
        for doc, payload in zip(docs, published, strict=True):
            service.published(doc, payload, True, "on list")
        call_cpu = (time.process_time() - t) / count  # includes the writer thread's CPU
        call_wall = (time.perf_counter() - started) / count
        service.history.flush(120)
        total_cpu = (time.process_time() - t) / count
        service.stop()
    return {
        "payload": payload_cost,
        "published() wall": call_wall,
        "published() cpu": call_cpu,
        "with writer": total_cpu,
    }


def bench_writer_beside_a_busy_thread(count: int) -> dict[str, dict[str, float]]:
    """The history writing ``count`` reads while another thread keeps the GIL busy (a
    camera thread in a flood): its own way (one INSERT per 500 rows) against the same rows
    with ``executemany`` (one step per row, the GIL won back each time). Wall time of the
    writes, and how much the busy thread got done meanwhile (per second, vs alone)."""
    spins = 0
    stop = False

    def spin() -> None:
        nonlocal spins
        while not stop:
            for _ in range(1000):
                pass
            spins += 1

    def timed(write: Any) -> dict[str, float]:
        before, started = spins, time.perf_counter()
        write()
        took = time.perf_counter() - started
        return {"seconds": took, "busy thread per s": (spins - before) / took}

    out: dict[str, dict[str, float]] = {}
    worker = threading.Thread(target=spin, daemon=True)
    worker.start()
    try:
        out["busy thread alone"] = timed(lambda: time.sleep(1.0))
        for name in ("executemany (reference)", "History (one INSERT per 500 rows)"):
            with tempfile.TemporaryDirectory() as folder:
                history = History(Path(folder))
                waiting = [history.add_published(_doc(n)) for n in range(count)]
                batch = list(history._queue)
                history._queue.clear()
                assert len(batch) == len(waiting)
                if name.startswith("History"):
                    out[name] = timed(lambda: history._write(batch))
                else:
                    rows = [w.row() for w in batch]
                    db = history._db

                    def many() -> None:
                        db.execute("BEGIN")
                        db.executemany("INSERT INTO reads VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
                        db.execute("COMMIT")

                    out[name] = timed(many)
                history.close()
    finally:
        stop = True
        worker.join()
    return out


def _doc(n: int) -> dict[str, Any]:
    read = decode(make_read(f"WR{n:05d}").xml)
    assert isinstance(read, PlateRead)
    return dict(
        json.loads(
            plate_payload(
                camera="gate",
                read=read,
                source="stream",
                received=datetime.now().astimezone(),
                images={},
                extra={"normalized": f"WR{n:05d}", "match": None, "duplicate": False},
            )
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=100_000)
    parser.add_argument("--live", type=int, default=2000)
    args = parser.parse_args()

    live = bench_live(args.live)
    print(
        f"live feed ({live['received']:.0f} reads at 500/s): p50 {ms(live['p50'])}, "
        f"p99 {ms(live['p99'])}  (target p99 < 100 ms)"
    )
    in_page = bench_live_browser(300)
    if in_page is not None:
        print(
            f"live feed into a Chromium page's DOM ({in_page['received']:.0f} reads at 50/s): "
            f"p50 {ms(in_page['p50'])}, p99 {ms(in_page['p99'])}  (target p99 < 100 ms)"
        )
    page = bench_page(30)
    print(
        "first page load: "
        + ", ".join(f"{k} {ms(v)}" for k, v in page.items())
        + "  (target < 300 ms)"
    )
    cost = bench_bridge_cost(8_000)  # fewer than the history queue holds: none dropped
    print(
        f"bridge thread per read: WebService.published() {cost['published() wall'] * 1e6:.1f} "
        "us wall; "
        f"payload JSON (done anyway) {cost['payload'] * 1e6:.1f} us; "
        f"CPU incl. the history writer {cost['with writer'] * 1e6:.1f} us "
        f"({cost['with writer'] / cost['payload']:.1f}x the payload)"
    )
    writer = bench_writer_beside_a_busy_thread(2_000)
    print("history writing 2,000 reads beside a thread that keeps the GIL busy:")
    alone = writer.pop("busy thread alone")["busy thread per s"]
    for name, figures in writer.items():
        pace = figures["busy thread per s"] / alone
        print(
            f"  {name:36s} {figures['seconds']:7.2f} s, the busy thread at {pace:.0%} of its "
            f"pace alone meanwhile: {figures['seconds'] * (1 - pace) * 1000:.0f} ms of its work lost"
        )
    search = bench_search(args.reads)
    fill_time = search.pop("(fill)")
    print(
        f"search over {args.reads:,} reads (filled in {fill_time['p95']:.1f} s, "
        f"{fill_time['p50'] * 1e6:.0f} us/read):"
    )
    for name, figures in search.items():
        print(f"  {name:20s} p50 {ms(figures['p50']):>10s}  p95 {ms(figures['p95']):>10s}")
    print("  (target p95 < 100 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
