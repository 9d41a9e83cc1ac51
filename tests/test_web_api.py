"""The page's JSON API and its security, against a real server on a free port."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from hik2mqtt.config import load_settings
from hik2mqtt.errors import ConfigError
from hik2mqtt.web.app import PUBLIC_PATHS
from hik2mqtt.web.demo import FakeBackend, camera, record
from hik2mqtt.web.server import WebService
from tests.conftest import wait_until

PASSWORD = "correct horse battery"


@dataclass
class Served:
    service: WebService
    backend: FakeBackend
    base: str

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[WebService] = []

    def start(*, password: str | None = PASSWORD, lists: str | None = None) -> Served:
        lists_path = None
        if lists is not None:
            lists_path = tmp_path / ("lists.csv" if lists.startswith("list,") else "lists.yaml")
            lists_path.write_text(lists)
        backend = FakeBackend(
            views=[camera("gate", outputs=(1, 2), barrier=True), camera("back", online=False)],
            pictures={("gate", "plate"): b"\xff\xd8latest-plate\xff\xd9"},
            lists_path=lists_path,
            trigger_interval=60.0,
        )
        service = WebService(
            backend=backend,
            host="127.0.0.1",
            port=0,
            password=password,
            images_dir=tmp_path / "images",
        )
        service.start()
        started.append(service)
        return Served(service, backend, f"http://127.0.0.1:{service.port}")

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="module")
def serve_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the many requests of a sweep (each test must leave it as it was)."""
    folder = tmp_path_factory.mktemp("sweep")
    lists_path = folder / "lists.yaml"
    lists_path.write_text("lists:\n  allow: [AB1]\n")
    backend = FakeBackend(
        views=[camera("gate", outputs=(1, 2), barrier=True)],
        pictures={},
        lists_path=lists_path,
        trigger_interval=60.0,
    )
    service = WebService(
        backend=backend,
        host="127.0.0.1",
        port=0,
        password=PASSWORD,
        history_dir=folder / "history",
        images_dir=folder / "images",
    )
    service.start()
    service.read(record("gate", "AB12CDE"))
    try:
        yield Served(service, backend, f"http://127.0.0.1:{service.port}")
    finally:
        service.stop()


def login(served: Served) -> tuple[requests.Session, str]:
    session = requests.Session()
    answer = session.post(
        served.url("/login"), data={"password": PASSWORD}, allow_redirects=False, timeout=5
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    csrf = session.get(served.url("/api/session"), timeout=5).json()["csrf"]
    assert csrf
    return session, csrf


def test_cameras_and_reads_with_bearer(serve: Callable[..., Served]) -> None:
    """A script with Authorization: Bearer lists cameras and searches reads."""
    served = serve()
    served.service.read(record("gate", "AB12CDE", match="allow", gate=(True, "on list")))
    assert served.service.history.flush()
    auth = {"Authorization": f"Bearer {PASSWORD}"}
    cams = requests.get(served.url("/api/cameras"), headers=auth, timeout=5).json()
    assert [(c["name"], c["online"], c["outputs"], c["barrier"]) for c in cams] == [
        ("gate", True, [1, 2], True),
        ("back", False, [1], False),
    ]
    page = requests.get(
        served.url("/api/reads"), params={"plate": "ab 12 cde"}, headers=auth, timeout=5
    ).json()
    assert [(r["plate"], r["match"], r["gate"]) for r in page["reads"]] == [
        ("AB12CDE", "allow", {"open": True, "reason": "on list"})
    ]
    assert page["next_cursor"] is None


def test_reads_page_by_cursor(serve: Callable[..., Served]) -> None:
    """GET /api/reads pages with limit and the cursor it hands out."""
    served = serve()
    for n in range(5):
        served.service.read(record("gate", f"PG{n}"))
    assert served.service.history.flush()
    auth = {"Authorization": f"Bearer {PASSWORD}"}
    first = requests.get(served.url("/api/reads?limit=3"), headers=auth, timeout=5).json()
    second = requests.get(
        served.url(f"/api/reads?limit=3&cursor={first['next_cursor']}"), headers=auth, timeout=5
    ).json()
    assert [r["plate"] for r in first["reads"] + second["reads"]] == [
        "PG4",
        "PG3",
        "PG2",
        "PG1",
        "PG0",
    ]
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=²", "limit=999", "tolerance=5", "cursor=-1", "since=yesterday", "gate=x"],
)
def test_bad_filters_are_refused_clearly(serve: Callable[..., Served], query: str) -> None:
    """A bad filter is a 400 with a reason, not a server error."""
    served = serve()
    answer = requests.get(
        served.url(f"/api/reads?{query}"),
        headers={"Authorization": f"Bearer {PASSWORD}"},
        timeout=5,
    )
    assert answer.status_code == 400
    assert answer.json()["error"]


DEEP = b"[" * 1500 + b"]" * 1500
HOSTILE_QUERIES = [
    "since=0001-01-01",  # no POSIX timestamp in the bridge's zone: was a 500
    "until=0001-01-01",
    "since=0001-01-01T00:00:00",
    "since=2026-02-30",
    "since=2026-01-01T24:01",
    "since=NaN",
    "since=inf",
    "since=" + "2" * 65,
    "until=%ff%fe",
    "limit=NaN",
    "limit=inf",
    "limit=1e3",
    "limit=-1",
    "limit=" + "9" * 5000,
    "limit=%EF%BC%91",  # a full-width digit one
    "tolerance=-1",
    "tolerance=1.5",
    "cursor=" + "9" * 40,
    "cursor=-5",
    "plate=" + "A" * 10_000,
    "camera=" + "x" * 65,
    "duplicate=maybe",
    "retransmitted=%00",
    "gate=%ff",
]


@pytest.mark.parametrize("path", ["/api/reads", "/api/reads.csv"])
@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_hostile_filters_are_400_with_a_reason(
    serve_once: Served, caplog: pytest.LogCaptureFixture, path: str, query: str
) -> None:
    """Any date, number or text a client sends as a filter is a 400 saying which filter."""
    caplog.set_level(logging.ERROR)
    answer = requests.get(
        serve_once.url(f"{path}?{query}"),
        headers={"Authorization": f"Bearer {PASSWORD}"},
        timeout=10,
    )
    assert answer.status_code == 400, answer.text[:200]
    reason = answer.json()["error"]
    assert reason.split(":", maxsplit=1)[0] == query.split("=", maxsplit=1)[0]
    assert "unexpected error" not in caplog.text


HOSTILE_BODIES = [
    (DEEP, "nested deeper than 32 levels"),  # was a RecursionError, a 500
    (b'{"a":' * 600 + b"1" + b"}" * 600, "nested deeper than 32 levels"),
    (b'{"value":' + b"[" * 33 + b"]" * 33 + b"}", "nested deeper than 32 levels"),
    (b"[]", "expected a JSON object"),
    (b"null", "expected a JSON object"),
    (b'"on"', "expected a JSON object"),
    (b"7", "expected a JSON object"),
    (b'{"value": NaN}', "NaN is not a JSON number"),
    (b'{"value": -Infinity}', "-Infinity is not a JSON number"),
    (b'{"value": 1e999}', "too large"),
    (b'{"value": ' + b"9" * 4000 + b"}", "more than 20 digits"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"value": "\xc3"}', "not UTF-8"),
    (b"{", "not JSON"),
    (b'{"value": "on"} x', "not JSON"),
]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/cameras/gate/barrier"),
        ("POST", "/api/cameras/gate/outputs/1"),
        ("PUT", "/api/lists"),
    ],
)
@pytest.mark.parametrize(("body", "why"), HOSTILE_BODIES)
def test_hostile_json_bodies_are_400_with_a_reason(
    serve_once: Served,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    body: bytes,
    why: str,
) -> None:
    """Deep, non-object, non-finite, huge or non-UTF-8 JSON is a 400 saying why; nothing
    reaches the camera or the lists file."""
    caplog.set_level(logging.ERROR)
    before = serve_once.backend.lists_path.read_text() if serve_once.backend.lists_path else ""
    answer = requests.request(
        method,
        serve_once.url(path),
        data=body,
        headers={"Authorization": f"Bearer {PASSWORD}"},
        timeout=10,
    )
    assert answer.status_code == 400, answer.text[:200]
    assert why in answer.json()["error"]
    assert serve_once.backend.submitted == []
    assert serve_once.backend.lists_path is not None
    assert serve_once.backend.lists_path.read_text() == before
    assert "unexpected error" not in caplog.text


@pytest.mark.parametrize(
    "value", ["x" * 65, "on\x00", "open\n", "\ud800"], ids=["long", "nul", "newline", "surrogate"]
)
def test_command_values_are_short_printable_text(serve_once: Served, value: str) -> None:
    """A command's value is refused before the camera when it can't be one: too long,
    control characters, a lone surrogate (which no answer could even encode)."""
    answer = requests.post(
        serve_once.url("/api/cameras/gate/barrier"),
        data=('{"value": ' + json.dumps(value) + "}").encode(),
        headers={"Authorization": f"Bearer {PASSWORD}"},
        timeout=5,
    )
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("value:")
    assert serve_once.backend.submitted == []


def test_login_forms_and_bodies_are_refused_clearly(serve_once: Served) -> None:
    """A login form with too many fields, or too big, is a 400/413, not a server error."""
    many = requests.post(
        serve_once.url("/login"),
        data=b"password=x&" + b"a=1&" * 100,
        headers={"content-type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
        timeout=5,
    )
    assert many.status_code == 400
    assert "at most 10 fields" in many.json()["error"]
    big = requests.post(
        serve_once.url("/login"), data=b"p" * 5000, allow_redirects=False, timeout=5
    )
    assert big.status_code == 413


def test_times_at_the_edges_still_search(serve_once: Served) -> None:
    """Times far away that do have a timestamp are searched, not refused."""
    auth = {"Authorization": f"Bearer {PASSWORD}"}
    for query in [
        "since=0001-01-01T00:00:00%2B00:00",
        "until=9999-12-31T23:59:59.999999-14:00",
        "since=1970-01-01&until=9999-01-01",
    ]:
        answer = requests.get(serve_once.url(f"/api/reads?{query}"), headers=auth, timeout=5)
        assert answer.status_code == 200, (query, answer.text)


def test_csv_export(serve: Callable[..., Served]) -> None:
    """GET /api/reads.csv streams the search as a CSV attachment."""
    served = serve()
    served.service.read(record("gate", "CSV1"))
    served.service.read(record("back", "CSV2"))
    assert served.service.history.flush()
    answer = requests.get(
        served.url("/api/reads.csv?camera=back"),
        headers={"Authorization": f"Bearer {PASSWORD}"},
        timeout=5,
    )
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    lines = answer.text.strip().splitlines()
    assert lines[0].startswith("id,received,camera,plate")
    assert len(lines) == 2
    assert ",back,CSV2," in lines[1]


def test_live_feed_delivers_reads_and_camera_status(serve: Callable[..., Served]) -> None:
    """GET /api/live sends the cameras, then each read the bridge hands over."""
    served = serve()
    session, _ = login(served)
    events: list[str] = []
    with session.get(served.url("/api/live"), stream=True, timeout=10) as feed:
        assert feed.headers["content-type"].startswith("text/event-stream")
        lines = feed.iter_lines(decode_unicode=True)
        for line in lines:
            if line.startswith("event: cameras"):
                break
        served.service.read(record("gate", "LIVE1"))
        for line in lines:
            if line.startswith("data:") and "LIVE1" in line:
                events.append(line)
                break
    assert events


def _watch_feed(served: Served, session: requests.Session) -> tuple[list[str], threading.Event]:
    """Open the live feed with this session; its lines, and an event set when it ends."""
    feed = session.get(served.url("/api/live"), stream=True, timeout=10)
    assert feed.status_code == 200
    lines: list[str] = []
    ended = threading.Event()

    def read() -> None:
        with feed, contextlib.suppress(requests.RequestException):
            lines.extend(feed.iter_lines(decode_unicode=True))
        ended.set()

    threading.Thread(target=read, daemon=True).start()
    wait_until(lambda: any(line.startswith("event: cameras") for line in list(lines)))
    return lines, ended


def test_live_feed_ends_at_logout(serve: Callable[..., Served]) -> None:
    """A page's live feed ends within seconds of its session's logout, and no read made
    after the logout reaches it."""
    served = serve()
    session, _ = login(served)
    lines, ended = _watch_feed(served, session)
    out = session.post(served.url("/logout"), allow_redirects=False, timeout=5)
    assert out.status_code == 303
    served.service.read(record("gate", "AFTER1"))
    assert ended.wait(10), "the live feed went on after the logout"
    assert not any("AFTER1" in line for line in lines)
    wait_until(lambda: served.service.live.clients == 0)


def test_live_feed_ends_when_the_session_expires(serve: Callable[..., Served]) -> None:
    """A page's live feed ends within seconds of its session expiring on the server."""
    served = serve()
    session, _ = login(served)
    _, ended = _watch_feed(served, session)
    later = time.time() + 13 * 3600  # past SESSION_HOURS (12)
    served.service.app.sessions.clock = lambda: later
    assert ended.wait(10), "the live feed went on after the session expired"


def test_slow_live_client_is_dropped_not_waited_for(serve: Callable[..., Served]) -> None:
    """A page that stops reading its feed is dropped once its queue is full; read() keeps
    returning at once."""
    served = serve()
    sock = socket.create_connection(("127.0.0.1", served.service.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(
        f"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {PASSWORD}\r\n\r\n".encode()
    )
    wait_until(lambda: served.service.live.clients == 1)
    big = "X" * 4000  # 4 kB a read: the socket's buffers fill after a few thousand

    def flood() -> bool:
        for _ in range(200):
            served.service.read(record("gate", big))
        return served.service.live.slow_dropped >= 1

    wait_until(flood, timeout=30)
    wait_until(lambda: served.service.live.clients == 0)
    sock.close()


def test_picture_of_a_read_from_the_folder_and_latest(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    """A read's picture comes from its file in the picture folder; without a file, the
    camera's latest picture is served only for the camera's latest read."""
    served = serve()
    images = tmp_path / "images"
    images.mkdir()
    kept = images / "v.jpg"
    kept.write_bytes(b"\xff\xd8vehicle\xff\xd9")
    older = served.service.read(record("gate", "OLD", pictures={"vehicle": kept, "plate": None}))
    newer = served.service.read(record("gate", "NEW", pictures={"plate": None}))
    auth = {"Authorization": f"Bearer {PASSWORD}"}

    def get(path: str) -> requests.Response:
        return requests.get(served.url(path), headers=auth, timeout=5)

    assert get(f"/api/reads/{older.id}/pictures/vehicle").content == kept.read_bytes()
    assert get(f"/api/reads/{older.id}/pictures/plate").status_code == 404
    latest = get(f"/api/reads/{newer.id}/pictures/plate")
    assert latest.headers["content-type"] == "image/jpeg"
    assert latest.content == b"\xff\xd8latest-plate\xff\xd9"
    assert get("/api/cameras/gate/pictures/plate").content == latest.content


@pytest.mark.parametrize(
    "path",
    [
        "/api/reads/1/pictures/..%2F..%2Fetc%2Fpasswd",
        "/api/reads/1/pictures/../../../etc/passwd",
        "/api/reads/%2E%2E/pictures/plate",
        "/api/cameras/gate/pictures/..%2Fsecret",
        "/api/cameras/..%2F..%2Fetc/pictures/plate",
        "/static/..%2F..%2F..%2Fconfig.py",
        "/static/../app.py",
    ],
)
def test_picture_urls_cannot_leave_the_folder(serve: Callable[..., Served], path: str) -> None:
    """Picture and static URLs with .. or encoded slashes serve nothing outside."""
    served = serve()
    served.service.read(record("gate", "AB1", pictures={"plate": None}))
    answer = requests.get(
        served.url(path), headers={"Authorization": f"Bearer {PASSWORD}"}, timeout=5
    )
    assert answer.status_code in (400, 404)
    assert b"root:" not in answer.content
    assert b"import" not in answer.content


def test_commands_reach_the_backend_and_its_refusals_come_back(
    serve: Callable[..., Served],
) -> None:
    """Read now, pulse an output and open the barrier reach the backend; its refusal
    (rate limit, bad value) is a 409 with the reason."""
    served = serve()
    session, csrf = login(served)
    headers = {"X-CSRF-Token": csrf}
    assert (
        session.post(
            served.url("/api/cameras/gate/trigger"), headers=headers, timeout=5
        ).status_code
        == 202
    )
    again = session.post(served.url("/api/cameras/gate/trigger"), headers=headers, timeout=5)
    assert again.status_code == 409
    assert "too soon" in again.json()["reason"]
    pulse = session.post(
        served.url("/api/cameras/gate/outputs/2"), json={"value": "1.5"}, headers=headers, timeout=5
    )
    assert pulse.status_code == 202
    barrier = session.post(
        served.url("/api/cameras/gate/barrier"), json={"value": "open"}, headers=headers, timeout=5
    )
    assert barrier.status_code == 202
    bad = session.post(
        served.url("/api/cameras/gate/outputs/1"),
        json={"value": "9999"},
        headers=headers,
        timeout=5,
    )
    assert bad.status_code == 409
    assert (
        session.post(
            served.url("/api/cameras/nope/trigger"), headers=headers, timeout=5
        ).status_code
        == 404
    )
    assert [(s.camera, s.kind, s.output, s.value) for s in served.backend.submitted] == [
        ("gate", "trigger", None, ""),
        ("gate", "output", 2, "1.5"),
        ("gate", "barrier", None, "open"),
    ]


def test_lists_round_trip_in_yaml(serve: Callable[..., Served], tmp_path: Path) -> None:
    """GET /api/lists gives the lists; PUT writes the file atomically in YAML and reloads."""
    served = serve(lists="lists:\n  allow:\n    tolerance: 1\n    plates:\n      - AB12CDE\n")
    session, csrf = login(served)
    got = session.get(served.url("/api/lists"), timeout=5).json()
    assert got["format"] == "yaml"
    assert got["lists"] == [
        {
            "name": "allow",
            "tolerance": 1,
            "plates": [
                {
                    "plate": "AB12CDE",
                    "name": None,
                    "notes": None,
                    "valid_from": None,
                    "valid_until": None,
                    "state": "valid",
                }
            ],
        }
    ]
    lists = got["lists"] + [
        {"name": "deny", "tolerance": 0, "plates": [{"plate": "EVIL1", "name": "Mallory"}]}
    ]
    put = session.put(
        served.url("/api/lists"),
        json={"lists": lists, "version": got["version"]},
        headers={"X-CSRF-Token": csrf},
        timeout=5,
    )
    assert put.status_code == 200, put.text
    assert served.backend.reloads == 1
    exact = served.backend.lists.match("EVIL 1")
    assert exact is not None
    assert (exact.list, exact.entry.name) == ("deny", "Mallory")
    assert served.backend.lists.match("EV1L1") is None  # deny's tolerance 0: no look-alikes
    assert [p.name for p in (tmp_path).iterdir() if p.name.endswith(".tmp")] == []
    stale = session.put(
        served.url("/api/lists"),
        json={"lists": lists, "version": got["version"]},
        headers={"X-CSRF-Token": csrf},
        timeout=5,
    )
    assert stale.status_code == 409


def test_lists_round_trip_in_csv(serve: Callable[..., Served], tmp_path: Path) -> None:
    """A CSV lists file is written back as CSV; a tolerance it can't hold is refused."""
    served = serve(lists="list,plate,name,notes\nallow,AB12CDE,Alice,\n")
    auth = {"Authorization": f"Bearer {PASSWORD}"}
    lists = [{"name": "allow", "tolerance": 0, "plates": [{"plate": "ZZ1", "name": "Zed, Jr."}]}]
    put = requests.put(served.url("/api/lists"), json={"lists": lists}, headers=auth, timeout=5)
    assert put.status_code == 200, put.text
    assert (tmp_path / "lists.csv").read_text() == 'list,plate,name,notes\nallow,ZZ1,"Zed, Jr.",\n'
    lists[0]["tolerance"] = 1
    refused = requests.put(served.url("/api/lists"), json={"lists": lists}, headers=auth, timeout=5)
    assert refused.status_code == 400
    assert "CSV" in refused.json()["error"]


def test_lists_with_the_same_name_twice_are_refused(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    """Two lists with one name (after trimming, as the file keeps names) are refused with a
    400 naming the list, and the file stays as it was; names differing in case are two
    lists, as the bridge reads them."""
    original = "lists:\n  allow: [AB12CDE]\n"
    served = serve(lists=original)
    auth = {"Authorization": f"Bearer {PASSWORD}"}
    lists = [
        {"name": "allow", "tolerance": 0, "plates": [{"plate": "AB12CDE"}]},
        {"name": "new", "tolerance": 0, "plates": [{"plate": "NEW1"}]},
        {"name": " new ", "tolerance": 0, "plates": [{"plate": "NEW2"}]},
    ]
    refused = requests.put(served.url("/api/lists"), json={"lists": lists}, headers=auth, timeout=5)
    assert refused.status_code == 400
    assert refused.json()["error"] == "two lists are named 'new': give each list its own name"
    assert (tmp_path / "lists.yaml").read_text() == original
    assert served.backend.reloads == 0
    lists[2]["name"] = "New"
    saved = requests.put(served.url("/api/lists"), json={"lists": lists}, headers=auth, timeout=5)
    assert saved.status_code == 200, saved.text
    got = requests.get(served.url("/api/lists"), headers=auth, timeout=5).json()
    assert [(pl["name"], [e["plate"] for e in pl["plates"]]) for pl in got["lists"]] == [
        ("allow", ["AB12CDE"]),
        ("new", ["NEW1"]),
        ("New", ["NEW2"]),
    ]


def test_csv_cannot_keep_an_empty_list(serve: Callable[..., Served], tmp_path: Path) -> None:
    """Saving an empty list to a CSV lists file (a row per plate) is refused with a 400
    saying so, instead of the list vanishing; the file stays as it was."""
    original = "list,plate,name,notes\nallow,AB12CDE,Alice,\n"
    served = serve(lists=original)
    auth = {"Authorization": f"Bearer {PASSWORD}"}
    lists = [
        {"name": "allow", "tolerance": 0, "plates": [{"plate": "AB12CDE", "name": "Alice"}]},
        {"name": "new", "tolerance": 0, "plates": []},
    ]
    refused = requests.put(served.url("/api/lists"), json={"lists": lists}, headers=auth, timeout=5)
    assert refused.status_code == 400
    reason = refused.json()["error"]
    assert "'new'" in reason
    assert "CSV" in reason
    assert "empty list" in reason
    assert (tmp_path / "lists.csv").read_text() == original
    assert served.backend.reloads == 0


def test_lists_file_that_cannot_be_renamed_onto_is_written_in_place(
    serve: Callable[..., Served],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When the lists file can't be replaced by a rename (a single-file bind mount: EBUSY)
    it is rewritten in place, said in one log line, and the bridge reloads it; any other
    rename error still refuses the save and leaves the file as it was."""
    served = serve(lists="lists:\n  allow: [" + ", ".join(f"P{n:05}" for n in range(50)) + "]\n")
    path = tmp_path / "lists.yaml"
    inode = path.stat().st_ino
    real_replace = os.replace
    failure = [errno.EBUSY]

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst) == path:
            raise OSError(failure[0], os.strerror(failure[0]))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    caplog.set_level(logging.INFO, logger="hik2mqtt.listsfile")
    auth = {"Authorization": f"Bearer {PASSWORD}"}
    lists = [{"name": "deny", "tolerance": 0, "plates": [{"plate": "EVIL1"}]}]
    saved = requests.put(served.url("/api/lists"), json={"lists": lists}, headers=auth, timeout=5)
    assert saved.status_code == 200, saved.text
    assert saved.json()["reloaded"] is True
    text = path.read_text()
    assert text == "# Written by the hik2mqtt page.\nlists:\n  deny:\n  - EVIL1\n"
    assert path.stat().st_ino == inode
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert served.backend.lists.match("EVIL1") is not None
    assert served.backend.lists.match("P00001") is None
    notes = [r.getMessage() for r in caplog.records if "in place" in r.getMessage()]
    assert len(notes) == 1
    assert "Device or resource busy" in notes[0]
    failure[0] = errno.EACCES
    lists[0]["plates"] = [{"plate": "OTHER2"}]
    refused = requests.put(served.url("/api/lists"), json={"lists": lists}, headers=auth, timeout=5)
    assert refused.status_code == 500
    assert path.read_text() == text
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_erase_a_plate(serve: Callable[..., Served]) -> None:
    """DELETE /api/reads?plate= erases that plate's reads."""
    served = serve()
    served.service.read(record("gate", "GONE1"))
    served.service.read(record("gate", "KEPT1"))
    auth = {"Authorization": f"Bearer {PASSWORD}"}
    answer = requests.delete(served.url("/api/reads?plate=gone-1"), headers=auth, timeout=5)
    assert answer.json() == {"reads": 1, "pictures": 0}
    left = requests.get(served.url("/api/reads"), headers=auth, timeout=5).json()["reads"]
    assert [r["plate"] for r in left] == ["KEPT1"]


def test_erasing_a_cameras_last_read_forgets_its_last_picture(
    serve: Callable[..., Served],
) -> None:
    """When the erased plate's read is a camera's last, the picture the page holds for that
    camera goes (404); erasing a plate that is not a camera's last read keeps it."""
    served = serve()
    served.service.read(record("gate", "GONE1"))
    served.service.read(record("gate", "LAST1"))
    served.service.read(record("back", "GONE1"))
    auth = {"Authorization": f"Bearer {PASSWORD}"}
    picture = served.url("/api/cameras/gate/pictures/plate")
    assert requests.get(picture, headers=auth, timeout=5).status_code == 200
    answer = requests.delete(served.url("/api/reads?plate=gone1"), headers=auth, timeout=5)
    assert answer.json() == {"reads": 2, "pictures": 0}
    assert requests.get(picture, headers=auth, timeout=5).status_code == 200
    assert served.backend.forgotten == ["back"]
    answer = requests.delete(served.url("/api/reads?plate=last 1"), headers=auth, timeout=5)
    assert answer.json() == {"reads": 1, "pictures": 0}
    gone = requests.get(picture, headers=auth, timeout=5)
    assert (gone.status_code, gone.json()) == (404, {"error": "no picture yet"})
    assert served.backend.forgotten == ["back", "gate"]


# -- security ---------------------------------------------------------------------------


def test_everything_needs_a_login_with_a_password(serve: Callable[..., Served]) -> None:
    """With a password, the page redirects to the login form and every API call is 401."""
    served = serve()
    page = requests.get(served.url("/"), allow_redirects=False, timeout=5)
    assert page.status_code == 303
    assert page.headers["location"] == "/login"
    for method, path in [
        ("GET", "/api/cameras"),
        ("GET", "/api/reads"),
        ("GET", "/api/reads.csv"),
        ("GET", "/api/live"),
        ("GET", "/api/lists"),
        ("GET", "/api/reads/1/pictures/plate"),
        ("POST", "/api/cameras/gate/trigger"),
        ("DELETE", "/api/reads?plate=A"),
    ]:
        answer = requests.request(method, served.url(path), timeout=5)
        assert answer.status_code == 401, (method, path)
    assert served.backend.submitted == []


def test_session_cookie_is_httponly_strict_and_expiring(serve: Callable[..., Served]) -> None:
    """The login cookie is HttpOnly, SameSite=Strict, with a Max-Age."""
    served = serve()
    answer = requests.post(
        served.url("/login"), data={"password": PASSWORD}, allow_redirects=False, timeout=5
    )
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "max-age=43200" in cookie


def test_state_changes_need_the_csrf_token(serve: Callable[..., Served]) -> None:
    """With a session cookie, a POST without the CSRF header, with a wrong one, or from
    another origin is refused and never reaches the backend."""
    served = serve()
    session, csrf = login(served)
    trigger = served.url("/api/cameras/gate/trigger")
    assert session.post(trigger, timeout=5).status_code == 403
    assert session.post(trigger, headers={"X-CSRF-Token": "x" + csrf}, timeout=5).status_code == 403
    assert (
        session.post(
            trigger,
            headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
            timeout=5,
        ).status_code
        == 403
    )
    assert served.backend.submitted == []
    assert session.post(trigger, headers={"X-CSRF-Token": csrf}, timeout=5).status_code == 202


def test_failed_logins_are_limited_and_logged_without_the_text(
    serve: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    """After five wrong passwords from one address even the right one is refused for a
    while; the log says a login failed but never what was typed."""
    served = serve()
    caplog.set_level(logging.INFO, logger="hik2mqtt.listsfile")
    for n in range(5):
        answer = requests.post(
            served.url("/login"),
            data={"password": f"guess-{n}-hunter2"},
            allow_redirects=False,
            timeout=5,
        )
        assert answer.headers["location"] == "/login?failed=1"
    locked = requests.post(
        served.url("/login"), data={"password": PASSWORD}, allow_redirects=False, timeout=5
    )
    assert locked.headers["location"] == "/login?failed=2"
    bearer = requests.get(
        served.url("/api/cameras"), headers={"Authorization": f"Bearer {PASSWORD}"}, timeout=5
    )
    assert bearer.status_code == 429
    text = caplog.text
    assert "failed login" in text
    assert "hunter2" not in text
    assert PASSWORD not in text


def test_without_a_password_it_is_read_only(serve: Callable[..., Served]) -> None:
    """Without a password, reading works and every POST, PUT and DELETE is refused."""
    served = serve(password=None, lists="lists:\n  allow: [AB1]\n")
    assert requests.get(served.url("/api/cameras"), timeout=5).status_code == 200
    assert requests.get(served.url("/"), timeout=5).status_code == 200
    for method, path in [
        ("POST", "/api/cameras/gate/trigger"),
        ("POST", "/api/cameras/gate/outputs/1"),
        ("POST", "/api/cameras/gate/barrier"),
        ("PUT", "/api/lists"),
        ("DELETE", "/api/reads?plate=AB1"),
    ]:
        answer = requests.request(method, served.url(path), json={"value": "on"}, timeout=5)
        assert answer.status_code == 403, (method, path)
        assert "read-only" in answer.json()["error"]
    assert served.backend.submitted == []


def test_without_a_password_only_loopback_host_names(serve: Callable[..., Served]) -> None:
    """Without a password, a request naming another host (DNS rebinding) is refused."""
    served = serve(password=None)
    answer = requests.get(
        served.url("/api/reads"), headers={"Host": "attacker.example:8080"}, timeout=5
    )
    assert answer.status_code == 421
    for host, status in [
        ("127.example.com", 421),
        ("127.0.0.1.attacker.example:8080", 421),
        ("localhost.attacker.example", 421),
        ("[::1].attacker.example", 421),
        ("127.0.0.1:8080", 200),
        ("127.0.0.2:8080", 200),
        ("localhost:8080", 200),
        ("[::1]:8080", 200),
    ]:
        answer = requests.get(served.url("/api/reads"), headers={"Host": host}, timeout=5)
        assert answer.status_code == status, host


def test_every_public_path_is_served_without_a_login(serve: Callable[..., Served]) -> None:
    """Each path the guard lets through without a login exists and answers without one."""
    served = serve()
    expected = {
        ("GET", "/login"): 200,
        ("POST", "/logout"): 303,
        ("GET", "/static/style.css"): 200,
        ("GET", "/favicon.ico"): 204,
    }
    assert {path for _, path in expected} == PUBLIC_PATHS
    for (method, path), status in expected.items():
        answer = requests.request(method, served.url(path), allow_redirects=False, timeout=5)
        assert answer.status_code == status, (method, path)


def test_security_headers(serve: Callable[..., Served]) -> None:
    """Pages and API answers carry a CSP without inline script, nosniff, frame-ancestors
    'none'; API answers are not cached; the server's name is not told."""
    served = serve(password=None)
    for path in ("/", "/api/cameras", "/static/app.js"):
        headers = requests.get(served.url(path), timeout=5).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert "server" not in headers
    assert (
        requests.get(served.url("/api/cameras"), timeout=5).headers["cache-control"] == "no-store"
    )


def test_page_has_no_inline_script_and_escapes_by_construction() -> None:
    """The page's HTML has no inline script or handler, and app.js never assigns HTML."""
    static = Path(__file__).resolve().parents[1] / "hik2mqtt" / "web" / "static"
    page = (static / "index.html").read_text()
    assert "<script>" not in page
    assert " on" + "click=" not in page
    script = (static / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


def test_big_bodies_are_refused(serve: Callable[..., Served]) -> None:
    """A body over the limit is a 413 without being read whole."""
    served = serve(lists="lists:\n  allow: [AB1]\n")
    auth = {"Authorization": f"Bearer {PASSWORD}"}
    answer = requests.put(
        served.url("/api/lists"),
        data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers=auth,
        timeout=10,
    )
    assert answer.status_code == 413


def test_settings_refuse_an_open_page_without_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """HIK2MQTT_WEB__HOST other than loopback without HIK2MQTT_WEB__PASSWORD fails at start
    with one line naming the variable; with a password, or on loopback, it loads."""
    monkeypatch.setenv("HIK2MQTT_WEB__HOST", "0.0.0.0")
    with pytest.raises(ConfigError) as failure:
        load_settings(None, require_cameras=False)
    assert any(line.startswith("HIK2MQTT_WEB__PASSWORD:") for line in failure.value.problems)
    monkeypatch.setenv("HIK2MQTT_WEB__PASSWORD", PASSWORD)
    assert load_settings(None, require_cameras=False).web.password is not None
    monkeypatch.setenv("HIK2MQTT_WEB__HOST", "127.0.0.1")
    monkeypatch.delenv("HIK2MQTT_WEB__PASSWORD")
    settings = load_settings(None, require_cameras=False)
    assert settings.web.port == 8080
    assert settings.history.keep_days == 30
    monkeypatch.setenv("HIK2MQTT_WEB__PORT", "0")
    assert (
        WebService.from_settings(load_settings(None, require_cameras=False), FakeBackend()) is None
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("127.255.255.254", True),
        ("localhost", True),
        ("LocalHost", True),
        ("::1", True),
        ("[::1]", True),
        ("127.example.com", False),
        ("127.0.0.1.nip.io", False),
        ("localhost.example.com", False),
        ("127.1", False),
        ("128.0.0.1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("[::]", False),
        ("192.168.1.10", False),
        ("gate-pc", False),
    ],
)
def test_settings_tell_loopback_by_parsing_the_address(
    monkeypatch: pytest.MonkeyPatch, host: str, loopback: bool
) -> None:
    """HIK2MQTT_WEB__HOST is loopback only when it is an address in 127.0.0.0/8 or ::1, or
    the name localhost; any other host name (127.example.com too) needs a password."""
    monkeypatch.setenv("HIK2MQTT_WEB__HOST", host)
    if loopback:
        assert load_settings(None, require_cameras=False).web.loopback
        return
    with pytest.raises(ConfigError) as failure:
        load_settings(None, require_cameras=False)
    assert any(line.startswith("HIK2MQTT_WEB__PASSWORD:") for line in failure.value.problems)


def test_stop_ends_open_live_feeds(serve: Callable[..., Served]) -> None:
    """stop() returns promptly with a page's live feed open, and frees the port."""
    served = serve()
    session, _ = login(served)
    feed = session.get(served.url("/api/live"), stream=True, timeout=10)
    wait_until(lambda: served.service.live.clients == 1)
    done = threading.Event()

    def stop() -> None:
        served.service.stop()
        done.set()

    assert served.service.alive
    threading.Thread(target=stop).start()
    assert done.wait(10)
    assert not served.service.alive
    feed.close()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", served.service.port))


def test_a_port_in_use_fails_at_start() -> None:
    """start() fails with one configuration line naming HIK2MQTT_WEB__PORT when the port is
    taken, and leaves nothing running."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = WebService(backend=FakeBackend(), host="127.0.0.1", port=port, password=None)
        with pytest.raises(ConfigError) as failure:
            service.start()
        assert failure.value.problems == [
            f"HIK2MQTT_WEB__PORT: cannot listen on 127.0.0.1:{port}: Address already in use"
        ]
        assert not service.server.alive


def test_an_unusable_history_folder_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A history folder that can't be made fails with one line naming HIK2MQTT_HISTORY__DIR."""
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("HIK2MQTT_HISTORY__DIR", str(tmp_path / "file" / "history"))
    settings = load_settings(None, require_cameras=False)
    with pytest.raises(ConfigError) as failure:
        WebService.from_settings(settings, FakeBackend())
    assert failure.value.problems[0].startswith("HIK2MQTT_HISTORY__DIR: cannot keep the history")


def test_a_request_must_arrive_within_its_deadline(
    serve: Callable[..., Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that sends half a request (or nothing) is cut off at the deadline; a live
    feed, whose request is complete, outlives it."""
    monkeypatch.setattr("hik2mqtt.web.server.REQUEST_DEADLINE", 0.5)
    served = serve(password=None)
    for sent in (b"", b"GET /api/cameras HTTP/1.1\r\nHost: 127.0.0.1\r\n"):
        with socket.create_connection(("127.0.0.1", served.service.port)) as slow:
            slow.sendall(sent)
            slow.settimeout(10)
            assert slow.recv(100) == b""  # closed by the server, long before 10 s
    with socket.create_connection(("127.0.0.1", served.service.port)) as feed:
        feed.sendall(b"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        feed.settimeout(10)
        received = b""
        while received.count(b": keep-alive") < 2:  # two keep-alives: 2 s or more
            chunk = feed.recv(4096)
            assert chunk, "the live feed was cut"
            received += chunk
