"""Lists-file edits that parse but are wrong, are bombs, or are not text: one log line each,
the old lists kept, and a running bridge's control thread carries on."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hik2mqtt.plates import MAX_DEPTH, MAX_FILE_SIZE, ListsFile, parse_lists
from hik2mqtt.simulator import Simulator
from tests.conftest import (
    AnyBroker,
    RunBridge,
    Subscribe,
    bridge_settings,
    camera_config,
    wait_until,
)

GOOD = "lists:\n  allow:\n    plates:\n      - plate: AB12 CDE\n        name: Alice\n"

BAD_YAML = {
    "plates-a-number": "lists:\n  allow:\n    plates: 5\n",
    "plates-a-string": "lists:\n  allow:\n    plates: AB12CDE\n",
    "list-a-string": "lists:\n  allow: AB12CDE\n",
    "lists-a-number": "lists: 5\n",
    "top-level-list": "- lists\n",
    "entry-a-float": "lists:\n  allow: [1.5]\n",
    "entry-a-bool": "lists:\n  allow: [true]\n",
    "entry-a-list": "lists:\n  allow: [[AB1]]\n",
    "plate-a-list": "lists:\n  allow: [{plate: [AB1]}]\n",
    "name-a-mapping": "lists:\n  allow: [{plate: AB1, name: {a: b}}]\n",
    "entry-no-plate": "lists:\n  allow: [{name: Bob}]\n",
    "tolerance-bool": "lists:\n  allow: {tolerance: true, plates: [AB1]}\n",
    "tolerance-big": "lists:\n  allow: {tolerance: 99, plates: [AB1]}\n",
    "list-name-a-list": "lists:\n  [a, b]: [AB1]\n",
    "deep-flow": "[" * 100_000,
    "deep-block": "".join(" " * i + "- \n" for i in range(MAX_DEPTH + 5)),
    "alias-bomb": "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)
    )
    + "lists:\n  allow: [{plate: *j}]\n",
    "merge-key": "base: &b {plate: AB1}\nlists:\n  allow: [{<<: *b}]\n",
    "python-tag": "lists: !!python/object/apply:os.system ['true']\n",
    "lone-surrogate": 'lists:\n  allow: ["\\ud800"]\n',
    "not-yaml": "lists: [unclosed\n",
}

BAD_CSV = {
    "field-over-limit": "list,plate\nallow," + "x" * 200_000 + "\n",
    "no-plate": "list,plate\nallow,\n",
    "no-header": "allow,AB1\n",
    "unclosed-quote-at-limit": 'list,plate\nallow,"' + "y" * 200_000,
}


@pytest.mark.parametrize("text", BAD_YAML.values(), ids=BAD_YAML.keys())
def test_wrong_yaml_shapes_and_bombs_are_a_value_error(text: str) -> None:
    """Every wrong shape, bomb or unsafe tag in a YAML lists file is refused as ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - the message is for people
        parse_lists(text, csv_format=False)


@pytest.mark.parametrize("text", BAD_CSV.values(), ids=BAD_CSV.keys())
def test_wrong_csv_is_a_value_error(text: str) -> None:
    """A CSV lists file with a field over the csv limit or a row without a plate is refused."""
    with pytest.raises(ValueError):  # noqa: PT011
        parse_lists(text, csv_format=True)


def test_plates_given_as_numbers_and_short_forms_still_load() -> None:
    """What the format allows still loads: a plate alone, a number as a plate, no plates."""
    lists = parse_lists(
        "lists:\n  allow: [AB1, 1234]\n  deny:\n    plates:\n  vip:\n    tolerance: 1\n"
        "    plates: [{plate: XY9, name: Bo, notes: van, extra: kept}]\n",
        csv_format=False,
    )
    assert [(pl.name, [e.plate for e in pl.entries]) for pl in lists.lists] == [
        ("allow", ["AB1", "1234"]),
        ("deny", []),
        ("vip", ["XY9"]),
    ]


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300), csv_format=st.booleans())
def test_any_text_loads_or_is_a_value_error(text: str, csv_format: bool) -> None:
    """Whatever the file holds, parsing either gives lists or raises ValueError, nothing else."""
    with contextlib.suppress(ValueError):
        parse_lists(text, csv_format=csv_format)


@settings(max_examples=200, deadline=None)
@given(
    doc=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4)
        ),
        max_leaves=30,
    )
)
def test_any_json_shape_under_lists_loads_or_is_a_value_error(doc: object) -> None:
    """Any shape of document under ``lists:`` loads or is refused with ValueError."""
    text = json.dumps({"lists": doc})  # JSON is YAML
    with contextlib.suppress(ValueError):
        parse_lists(text, csv_format=False)


def edit(path: Path, content: str | bytes, step: list[float]) -> None:
    """Write the file and move its mtime on, as an editor saving it would."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    step[0] += 5
    os.utime(path, (step[0], step[0]))


BAD_FILES: dict[str, str | bytes] = {
    **{f"yaml-{k}": v for k, v in BAD_YAML.items()},
    "not-utf8": b"lists:\n  allow: [\xff\xfe]\n",
    "too-large": b"# " + b"x" * MAX_FILE_SIZE + b"\n" + GOOD.encode(),
}


def test_every_bad_edit_is_one_log_line_and_the_old_lists_stay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each bad edit on disk is logged once, in one line without a traceback, and the
    lists stay as they were; a corrected file is then read."""
    path = tmp_path / "lists.yaml"
    step = [time.time()]
    edit(path, GOOD, step)
    lists = ListsFile(path)
    good = lists.lists
    assert good.match("AB12CDE") is not None
    for name, content in BAD_FILES.items():
        caplog.clear()
        edit(path, content, step)
        assert lists.reload() is False, name
        assert lists.reload() is False, name  # unchanged: not read (or logged) again
        assert lists.lists is good, name
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, (name, [r.getMessage() for r in caplog.records])
        assert errors[0].exc_info is None, name
        assert "keeping the lists as they were" in errors[0].getMessage()
    edit(path, GOOD.replace("AB12 CDE", "NEW 1"), step)
    assert lists.reload() is True
    assert lists.lists.match("NEW1") is not None


def test_csv_bad_edits_keep_the_old_lists(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A CSV lists file edited into one over the csv field limit keeps its old lists."""
    path = tmp_path / "lists.csv"
    step = [time.time()]
    edit(path, "list,plate,name\nallow,AB1,Ann\n", step)
    lists = ListsFile(path)
    old = lists.lists
    for content in BAD_CSV.values():
        edit(path, content, step)
        assert lists.reload() is False
        assert lists.lists is old
    assert not [r for r in caplog.records if r.exc_info]


def test_a_running_bridge_survives_bad_edits_and_reads_the_fixed_file(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With a bridge running, bad edits on disk (wrong shape, deep nesting, an alias bomb, a
    CSV-sized field) keep the old lists matching; commands still reach the camera; a fixed
    file takes effect."""
    caplog.set_level(logging.INFO)
    path = tmp_path / "lists.yaml"
    step = [time.time()]
    edit(path, GOOD, step)
    sub = subscribe(f"{prefix}/#")
    run_bridge(bridge_settings(broker, prefix, {"cam": camera_config(simulator)}, lists_file=path))
    simulator.wait_for_streams(1)
    for name in ("plates-a-number", "deep-flow", "alias-bomb", "entry-a-float"):
        caplog.clear()
        edit(path, BAD_YAML[name], step)
        wait_until(
            lambda: any("keeping the lists" in r.getMessage() for r in caplog.records),
            timeout=10,
        )
    simulator.emit_read("AB12CDE")
    (first,) = sub.wait_for(f"{prefix}/cam/plate")
    assert json.loads(first.payload)["match"]["entry"]["name"] == "Alice"
    sub.wait_for(f"{prefix}/bridge/status")  # so the bridge has subscribed to commands
    sub.publish(f"{prefix}/cam/trigger", "")
    sub.wait_for(f"{prefix}/cam/trigger/result")
    caplog.clear()
    edit(path, GOOD.replace("AB12 CDE", "ZZ99 ZZZ").replace("Alice", "Zed"), step)
    wait_until(
        lambda: any(
            "plate lists" in r.getMessage() and "allow (1)" in r.getMessage()
            for r in caplog.records
        )
    )
    simulator.emit_read("ZZ99ZZZ")
    sub.wait_for(f"{prefix}/cam/plate", 3)  # the first read, the trigger's, and this one
    (last,) = [json.loads(p) for p in sub.payloads(f"{prefix}/cam/plate") if b"ZZ99ZZZ" in p]
    assert last["match"]["entry"]["name"] == "Zed"
    assert not [r for r in caplog.records if r.exc_info]
