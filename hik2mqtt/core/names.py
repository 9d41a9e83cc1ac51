"""Camera names that differ only in case: one topic level, so sometimes a configuration error.

A camera's name is its topic level, lower-cased whatever the environment's case. Parts of
one camera spelled two ways (``Gate__HOST`` and ``GATE__PASSWORD``) are that one camera, as
they always were; but one setting given under two spellings (``GATE__HOST`` and
``gate__HOST``: two hosts) is two cameras that would silently become one. Given the
variable names that configure cameras, :func:`case_clashes` reports each such clash,
naming the two variables.
"""

from __future__ import annotations

from collections.abc import Iterable


def case_clashes(variables: Iterable[str], prefix: str) -> list[str]:
    """One problem line per camera with a setting given under more than one spelling.

    ``prefix`` is the cameras' variable prefix (``HIK2MQTT_CAMERAS__``), matched whatever
    its case; other variables are ignored. A variable with nothing after the name
    (``HIK2MQTT_CAMERAS__GATE__``) stands for the whole camera and clashes with any other
    spelling. The lines are sorted, so the error reads the same on every run.
    """
    # lowered name -> setting (upper-cased, "" = whole camera) -> spelling -> variable
    seen: dict[str, dict[str, dict[str, str]]] = {}
    for variable in sorted(set(variables)):
        if not variable.upper().startswith(prefix.upper()):
            continue
        name, _, setting = variable[len(prefix) :].partition("__")
        if name:
            by_setting = seen.setdefault(name.lower(), {})
            by_setting.setdefault(setting.upper(), {}).setdefault(name, variable)
    problems = []
    for lowered, by_setting in sorted(seen.items()):
        whole = by_setting.get("", {})
        for setting in sorted(by_setting.keys() - {""}) or [""]:
            spellings = {**whole, **by_setting[setting]}
            if len(spellings) < 2:
                continue
            named = " and ".join(sorted(spellings.values()))
            names = ", ".join(repr(name) for name in sorted(spellings))
            problems.append(
                f"{named}: cameras {names} are one name once lower-cased (the topic level "
                f"{lowered!r}); rename one of them"
            )
            break
    return problems
