"""Camera names that differ only in case: one topic level, so a configuration error.

A camera's name is its topic level, lower-cased whatever the environment's case; two
cameras ``GATE`` and ``gate`` (two hosts) would silently become one. Given the variable
names that configure cameras, :func:`case_clashes` reports each such pair, naming a
variable of each spelling.
"""

from __future__ import annotations

from collections.abc import Iterable


def case_clashes(variables: Iterable[str], prefix: str) -> list[str]:
    """One problem line per camera name spelled more than one way in ``variables``.

    ``prefix`` is the cameras' variable prefix (``HIK2MQTT_CAMERAS__``), matched whatever
    its case; other variables are ignored. The lines are sorted, so the error reads the
    same on every run.
    """
    spellings: dict[str, dict[str, str]] = {}
    for variable in sorted(set(variables)):
        if not variable.upper().startswith(prefix.upper()):
            continue
        name = variable[len(prefix) :].split("__", 1)[0]
        if name:
            spellings.setdefault(name.lower(), {}).setdefault(name, variable)
    problems = []
    for lowered, by_spelling in sorted(spellings.items()):
        if len(by_spelling) < 2:
            continue
        named = " and ".join(by_spelling.values())
        names = ", ".join(repr(name) for name in by_spelling)
        problems.append(
            f"{named}: cameras {names} are one name once lower-cased (the topic level "
            f"{lowered!r}); rename one of them"
        )
    return problems
