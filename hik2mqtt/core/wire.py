"""Shapes the core and its edges share: the command kinds, and compact JSON as published.

One definition of each (the page, the pipeline and the command runner used to define their
own).
"""

from __future__ import annotations

import json
from typing import Any, Literal

CommandKind = Literal["trigger", "output", "barrier"]


def compact_json(doc: dict[str, Any]) -> bytes:
    """Compact JSON, UTF-8 (camera text stays readable): what every payload is built with."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
