"""Retry delays: small pure functions (jitter comes from a random source passed in)."""

from __future__ import annotations

import random
from collections.abc import Callable

# Camera unreachable: first retry within a second; capped so that reads resume within
# 5 s of the camera being reachable again (cap + connect time).
RECONNECT_BASE = 0.5
RECONNECT_CAP = 4.0
# Login refused: Hikvision locks an account after about five failed logins, so wait a
# minute before the first retry, doubling up to ten minutes.
AUTH_FIRST = 60.0
AUTH_CAP = 600.0


def reconnect_delay(
    attempt: int,
    *,
    base: float = RECONNECT_BASE,
    cap: float = RECONNECT_CAP,
    rand: Callable[[], float] = random.random,
) -> float:
    """Capped, jittered exponential delay before retry number ``attempt`` (0-based).

    The jitter keeps the delay in [half, all] of the exponential step, so cameras that
    dropped together do not all come back in the same instant.
    """
    step = min(cap, base * 2.0 ** min(attempt, 30))
    return step * (0.5 + 0.5 * rand())


def auth_delay(failures: int, *, unlock_time: int | None = None) -> float:
    """Delay after the ``failures``-th refused login in a row (1-based).

    Never sooner than 60 s, doubling to 10 minutes, and never before the camera says
    the account unlocks.
    """
    delay = min(AUTH_CAP, AUTH_FIRST * 2.0 ** max(0, min(failures - 1, 10)))
    if unlock_time is not None and unlock_time > 0:
        delay = max(delay, float(unlock_time) + 1.0)
    return delay
