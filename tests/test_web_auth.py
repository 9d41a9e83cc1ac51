"""Login bookkeeping: sessions expire on the server, failed logins are limited and forgiven."""

from __future__ import annotations

from hik2mqtt.web.auth import (
    FAILURE_WINDOW,
    FAILURES_OVERALL,
    FAILURES_PER_SOURCE,
    MAX_SESSIONS,
    LoginLimiter,
    Sessions,
    same_secret,
)


def test_sessions_expire_on_the_server() -> None:
    """A session is refused after its lifetime even if the browser keeps the cookie."""
    now = [1000.0]
    sessions = Sessions(3600, clock=lambda: now[0])
    session = sessions.create()
    assert sessions.get(session.token) == session
    now[0] += 3599
    assert sessions.get(session.token) is not None
    now[0] += 2
    assert sessions.get(session.token) is None
    assert sessions.get("") is None


def test_logout_ends_a_session_and_sessions_are_bounded() -> None:
    """end() forgets a session; past MAX_SESSIONS the one expiring soonest goes."""
    now = [0.0]
    sessions = Sessions(100, clock=lambda: now[0])
    first = sessions.create()
    sessions.end(first.token)
    assert sessions.get(first.token) is None
    made = []
    for _ in range(MAX_SESSIONS + 1):
        now[0] += 0.001
        made.append(sessions.create())
    assert sessions.get(made[0].token) is None
    assert sessions.get(made[-1].token) is not None


def test_failed_logins_lock_one_source_for_the_window() -> None:
    """Five failures from one address lock it (not others) until the window passes."""
    now = [0.0]
    limiter = LoginLimiter(clock=lambda: now[0])
    for _ in range(FAILURES_PER_SOURCE):
        assert limiter.allowed("10.0.0.1")
        limiter.failed("10.0.0.1")
    assert not limiter.allowed("10.0.0.1")
    assert limiter.allowed("10.0.0.2")
    now[0] += FAILURE_WINDOW + 1
    assert limiter.allowed("10.0.0.1")


def test_many_sources_failing_lock_every_login_for_a_minute() -> None:
    """Failures spread over many addresses still lock logins once there are too many."""
    now = [0.0]
    limiter = LoginLimiter(clock=lambda: now[0])
    for n in range(FAILURES_OVERALL):
        limiter.failed(f"10.1.{n // 250}.{n % 250}")
    assert not limiter.allowed("192.0.2.7")
    now[0] += 61
    assert limiter.allowed("192.0.2.7")


def test_same_secret() -> None:
    """Passwords compare exactly, whatever the length or characters of the attempt."""
    assert same_secret("pässwörd", "pässwörd")
    assert not same_secret("pässwörd ", "pässwörd")
    assert not same_secret("\udcff", "x")
