"""The pure core's boundary (issue 19): ``hik2mqtt/core`` imports the standard library and
itself only, checked in a fresh interpreter so nothing imported earlier hides a drift; and
no core module grows past 500 lines."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import hik2mqtt.core

CORE = Path(hik2mqtt.core.__file__).parent
MAX_LINES = 500


def core_modules() -> list[str]:
    return [f"hik2mqtt.core.{m.name}" for m in pkgutil.iter_modules([str(CORE)])]


def test_the_core_imports_only_the_standard_library_and_itself() -> None:
    modules = core_modules()
    assert len(modules) >= 3
    code = (
        "import importlib, json, sys\n"
        f"sys.path.insert(0, {str(CORE.parent.parent)!r})\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    run = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],  # no site: nothing a .pth file loads
        capture_output=True,
        text=True,
        check=True,
        cwd=CORE.parent.parent,
    )
    loaded = json.loads(run.stdout)
    ours = [m for m in loaded if m.split(".")[0] == "hik2mqtt"]
    assert set(modules) <= set(ours)
    outside = [m for m in ours if m not in ("hik2mqtt", "hik2mqtt.core") and m not in modules]
    assert outside == [], "the core imports the rest of hik2mqtt"
    foreign = sorted(
        {m.split(".")[0] for m in loaded}
        - set(sys.stdlib_module_names)
        - {"hik2mqtt", "__main__", "builtins", "sys"}
    )
    assert foreign == [], "the core imports something outside the standard library"


def test_no_core_module_is_over_500_lines() -> None:
    for path in CORE.glob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= MAX_LINES, (path.name, lines)
