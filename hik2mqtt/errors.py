"""The exception tree of hik2mqtt.

Library errors (requests, urllib3, expat, json) are translated at the boundary
with ``raise ... from exc`` into this small tree, so the rest of the code
handles a handful of our own types::

    Hik2MqttError
    ├── ConfigError            bad settings; one line per problem
    ├── ProtocolError          the camera's byte stream broke a framing rule or a limit
    ├── DecodeError            a complete part is not an event we understand
    └── CameraError            talking HTTP to one camera failed
        ├── CameraUnreachable  connect/DNS/TLS failure, or the connection dropped
        ├── StreamIdle         no byte for longer than the idle timeout
        ├── AuthError          the camera refused the credentials (401 after Digest)
        └── CameraHTTPError    any other non-2xx answer (with ISAPI ResponseStatus if any)

Messages never contain a password: the camera layer builds them from status
codes and the camera's own (unauthenticated) answers only.
"""

from __future__ import annotations


class Hik2MqttError(Exception):
    """Base class of every error hik2mqtt raises on purpose."""


class ConfigError(Hik2MqttError):
    """The configuration is invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ProtocolError(Hik2MqttError):
    """The multipart stream broke a framing rule or passed a size limit.

    The stream cannot be trusted past this point: the reader drops it and reopens.
    """


class DecodeError(Hik2MqttError):
    """A complete part could not be decoded into an event (bad XML/JSON, wrong shape)."""


class CameraError(Hik2MqttError):
    """Talking to a camera failed."""


class CameraUnreachable(CameraError):
    """The camera could not be reached, or the connection was lost."""


class StreamIdle(CameraError):
    """The event stream stayed silent for longer than the idle timeout."""


class AuthError(CameraError):
    """The camera refused our credentials.

    ``unlock_time`` is the number of seconds the camera says the account stays
    locked (Hikvision ``userCheck/unlockTime``), when it said so.
    """

    def __init__(
        self, message: str, *, locked: bool = False, unlock_time: int | None = None
    ) -> None:
        super().__init__(message)
        self.locked = locked
        self.unlock_time = unlock_time


class CameraHTTPError(CameraError):
    """The camera answered with a non-success HTTP status or ISAPI ResponseStatus."""

    def __init__(self, message: str, *, status: int, sub_status: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.sub_status = sub_status
