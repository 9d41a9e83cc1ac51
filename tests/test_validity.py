"""Passes that start and end: validity on list entries (core, files, gate rule, page)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from hik2mqtt import listsfile
from hik2mqtt.core.validity import Window, parse_bound, window
from hik2mqtt.pipeline import ListsIn
from hik2mqtt.plates import parse_lists
from tests.test_pipeline import TAKEN, make_pipeline, one_json, read_in
from tests.test_web_api import PASSWORD, Served, serve  # noqa: F401 - the fixture

GATE = {"gate": {"enabled": True, "output": 2, "pulse": 0.5}}
AUTH = {"Authorization": f"Bearer {PASSWORD}"}


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_core_validity_imports_only_the_standard_library() -> None:
    """hik2mqtt.core.validity runs in a fresh interpreter without any third-party module."""
    code = (
        "import sys, hik2mqtt.core.validity;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('yaml', 'pydantic', 'paho')];"
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == "[]"


def test_a_date_starts_at_midnight_and_lasts_the_whole_day_in_local_time() -> None:
    """A date alone: valid_from is that day's 00:00 and valid_until the next day's 00:00,
    both local; a naive time is local; a zone is honoured."""
    assert parse_bound("2026-12-24", end=False) == ts("2026-12-24T00:00:00")
    assert parse_bound("2026-12-24", end=True) == ts("2026-12-25T00:00:00")
    assert parse_bound("2026-12-24T18:30", end=True) == ts("2026-12-24T18:30:00")
    assert (
        parse_bound("2026-12-24T18:30:00Z", end=True)
        == datetime(2026, 12, 24, 18, 30, tzinfo=UTC).timestamp()
    )
    assert (
        parse_bound("2026-12-24T18:30+01:00", end=False)
        == datetime(2026, 12, 24, 17, 30, tzinfo=UTC).timestamp()
    )


@pytest.mark.parametrize(
    "text",
    ["", "tomorrow", "2026-13-01", "2026-02-30", "24/12/2026", "2026-12-24T25:00", "²026-01-01"],
)
def test_anything_but_an_iso_date_is_refused_with_the_field_named(text: str) -> None:
    """Bad dates are a ValueError naming valid_from or valid_until."""
    with pytest.raises(ValueError, match="valid_until"):
        parse_bound(text, end=True)


def test_window_states_and_an_end_before_the_start_is_refused() -> None:
    """A window is not yet valid before its start, valid up to (not at) its end, expired at
    it; an end not after its start is refused."""
    w = window("2026-12-24", "2026-12-24")
    start, end = ts("2026-12-24T00:00"), ts("2026-12-25T00:00")
    assert w == Window(start, end)
    assert w.state(start - 1) == "not yet valid"
    assert w.state(start) == "valid"
    assert w.state(end - 0.001) == "valid"
    assert w.state(end) == "expired"
    assert window(None, " ").always
    with pytest.raises(ValueError, match="not after"):
        window("2026-12-25", "2026-12-24")


def test_yaml_and_csv_entries_carry_validity_and_match_honours_it() -> None:
    """YAML (dates as YAML reads them or quoted) and CSV with valid_from/valid_until columns
    give entries whose match at a time outside the window is nothing, and lookup names the
    lapsed entry and why; without a time every entry matches as before."""
    yaml_lists = parse_lists(
        "lists:\n  allow:\n    - plate: VIS1\n      valid_from: 2026-12-24\n"
        "      valid_until: '2026-12-26T18:00'\n",
        csv_format=False,
    )
    csv_lists = parse_lists(
        "list,plate,name,notes,valid_from,valid_until\nallow,VIS1,,,2026-12-24,2026-12-26T18:00\n",
        csv_format=True,
    )
    for lists in (yaml_lists, csv_lists):
        (entry,) = lists.lists[0].entries
        assert (entry.valid_from, entry.valid_until) == ("2026-12-24", "2026-12-26T18:00")
        assert lists.match("VIS1") is not None
        assert lists.match("VIS1", now=ts("2026-12-25T12:00")) is not None
        assert lists.match("VIS1", now=ts("2026-12-26T18:00")) is None
        match, lapsed = lists.lookup("VIS1", now=ts("2026-12-26T18:00"))
        assert match is None
        assert lapsed is not None
        assert lapsed.state == "expired"
        assert lists.lookup("VIS1", now=ts("2026-12-23T23:59"))[1].state == "not yet valid"  # type: ignore[union-attr]


def test_a_bad_date_in_the_file_is_refused_with_where_it_is() -> None:
    """A file with an invalid validity is refused whole, naming the entry."""
    with pytest.raises(ValueError, match=r"entry 1: valid_until"):
        parse_lists(
            "lists:\n  allow:\n    - plate: X1\n      valid_until: soon\n", csv_format=False
        )
    with pytest.raises(ValueError, match="CSV row 2: valid_from"):
        parse_lists("list,plate,valid_from\nallow,X1,2026-99-01\n", csv_format=True)


def lists_at(valid_from: str | None, valid_until: str | None) -> ListsIn:
    doc = "lists:\n  allow:\n    - plate: AB12 CDE\n      name: Alice\n"
    if valid_from:
        doc += f"      valid_from: '{valid_from}'\n"
    if valid_until:
        doc += f"      valid_until: '{valid_until}'\n"
    return ListsIn(parse_lists(doc, csv_format=False))


def test_the_gate_refuses_an_expired_or_not_yet_valid_pass_and_the_read_has_no_match() -> None:
    """At the read's arrival time: a pass that ended is 'pass expired', one that has not
    begun 'pass not yet valid', neither opens and the read's match is null; inside its
    window the same pass opens."""
    received = TAKEN + timedelta(seconds=1.5)
    iso = received.isoformat()
    before = (received - timedelta(minutes=1)).isoformat()
    after = (received + timedelta(minutes=1)).isoformat()
    cases = [
        ((None, iso), False, "pass expired (list 'allow': Alice, valid until " + iso + ")"),
        (
            (after, None),
            False,
            "pass not yet valid (list 'allow': Alice, valid from " + after + ")",
        ),
        ((before, after), True, "on list 'allow': Alice"),
    ]
    for bounds, opens, reason in cases:
        pipeline = make_pipeline({"gate": GATE}, lists=False)
        pipeline.handle(lists_at(*bounds))
        effects = pipeline.handle(read_in())
        gate = one_json(effects, "anpr/gate/gate")
        assert (gate["open"], gate["reason"]) == (opens, reason)
        assert (one_json(effects, "anpr/gate/plate")["match"] is not None) == opens


def test_the_page_writes_validity_and_shows_expired_entries(
    serve: Callable[..., Served],  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """PUT /api/lists keeps valid_from/valid_until (YAML and CSV), refuses a bad date with a
    400 naming it and leaves the file; GET marks an expired entry expired and keeps it."""
    served = serve(lists="lists:\n  allow: [AB1]\n")
    lists: list[dict[str, Any]] = [
        {
            "name": "allow",
            "tolerance": 0,
            "plates": [
                {"plate": "OLD1", "valid_until": "2020-01-01"},
                {"plate": "NEW1", "valid_from": "2999-01-01"},
                {"plate": "NOW1", "valid_from": "2020-01-01", "valid_until": "2999-01-01T10:00"},
            ],
        }
    ]
    put = requests.put(served.url("/api/lists"), json={"lists": lists}, headers=AUTH, timeout=5)
    assert put.status_code == 200, put.text
    got = requests.get(served.url("/api/lists"), headers=AUTH, timeout=5).json()
    plates = got["lists"][0]["plates"]
    assert [(p["plate"], p["state"]) for p in plates] == [
        ("OLD1", "expired"),
        ("NEW1", "not yet valid"),
        ("NOW1", "valid"),
    ]
    assert plates[2]["valid_until"] == "2999-01-01T10:00"
    before = (tmp_path / "lists.yaml").read_text()
    lists[0]["plates"].append({"plate": "BAD1", "valid_until": "31/12/2026"})
    bad = requests.put(served.url("/api/lists"), json={"lists": lists}, headers=AUTH, timeout=5)
    assert bad.status_code == 400
    assert "valid_until" in bad.json()["error"]
    assert "BAD1" in bad.json()["error"]
    assert (tmp_path / "lists.yaml").read_text() == before


def test_csv_gets_validity_columns_only_when_an_entry_is_dated(tmp_path: Path) -> None:
    """The CSV writer keeps the four old columns until an entry has a validity, then writes
    six, and the text reads back with the same validity."""
    plain = [{"name": "allow", "plates": [{"plate": "A1"}]}]
    assert listsfile.serialise(plain, "csv") == "list,plate,name,notes\nallow,A1,,\n"
    dated = [{"name": "allow", "plates": [{"plate": "A1", "valid_until": "2027-01-01"}]}]
    text = listsfile.serialise(dated, "csv")
    assert text == "list,plate,name,notes,valid_from,valid_until\nallow,A1,,,,2027-01-01\n"
    (entry,) = parse_lists(text, csv_format=True).lists[0].entries
    assert entry.valid_until == "2027-01-01"
