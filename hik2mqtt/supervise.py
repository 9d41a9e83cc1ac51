"""Supervised threads: no thread of the bridge may die silently.

Crash-only, as Erlang supervisors or systemd's ``Restart=`` do it: when a thread's work
raises unexpectedly, the exception is logged with its traceback (once for each new kind
of failure; a repeat of the same one is a single line), ``on_crash`` lets the owner tell
the truth (a camera goes offline), and the work starts again after a capped backoff.
Work that returns normally is finished (it returns when the bridge stops).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from hik2mqtt.backoff import reconnect_delay

log = logging.getLogger(__name__)


def supervise(
    work: Callable[[], None],
    *,
    name: str,
    stop: threading.Event,
    on_crash: Callable[[], object] = lambda: None,
    backoff: Callable[[int], float] = reconnect_delay,
) -> Callable[[], None]:
    """A thread target that runs ``work`` until it returns, restarting it after a crash."""

    def run() -> None:
        crashes = 0
        last: str | None = None
        while True:
            try:
                work()
            except Exception as exc:
                what = f"{type(exc).__name__}: {exc}"[:300]
                delay = backoff(crashes)
                crashes += 1
                if what != last:
                    log.exception("%s failed unexpectedly; restarting it in %.0f s", name, delay)
                else:
                    log.error("%s failed again (%s); restarting it in %.0f s", name, what, delay)
                last = what
                try:
                    on_crash()
                except Exception:
                    log.exception("%s: reporting the failure failed", name)
                if stop.wait(delay):
                    return
                continue
            return

    return run


def start_thread(
    work: Callable[[], None],
    *,
    name: str,
    stop: threading.Event,
    on_crash: Callable[[], object] = lambda: None,
    backoff: Callable[[int], float] = reconnect_delay,
) -> threading.Thread:
    """Start a daemon thread running ``work`` under :func:`supervise`."""
    target = supervise(work, name=name, stop=stop, on_crash=on_crash, backoff=backoff)
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread
