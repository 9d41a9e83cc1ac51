"""The web page: live reads with their pictures, history and search, lists, gate buttons.

The bridge builds a :class:`WebService` (``WebService.from_settings(settings, backend)``),
implements :class:`WebBackend` for it, and hands it a :class:`ReadRecord` per read.
"""

from hik2mqtt.web.backend import CameraView, CommandOutcome, ReadRecord, WebBackend
from hik2mqtt.web.server import WebService

__all__ = ["CameraView", "CommandOutcome", "ReadRecord", "WebBackend", "WebService"]
