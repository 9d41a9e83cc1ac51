"""Pictures written to a folder: their file names, written atomically (temp file + rename),
with optional retention."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from datetime import datetime
from pathlib import Path

from hik2mqtt.events import PlateRead

log = logging.getLogger(__name__)
_UNSAFE_FILE_CHARS = re.compile(r"[^\w-]+")
FILE_PART_LIMIT = 32  # characters of camera text in a file name, at most


def safe_file_part(text: str | None, *, fallback: str, limit: int = FILE_PART_LIMIT) -> str:
    """Camera text made safe for a file name: letters, digits, _ and - only."""
    safe = _UNSAFE_FILE_CHARS.sub("_", text or "").strip("_-")[:limit]
    return safe or fallback


def picture_path(
    folder: Path, *, camera: str, read: PlateRead, kind: str, received: datetime
) -> Path:
    """Where a picture of a read is written: ``<folder>/<camera>/<date>/<time>_<plate>_<kind>.jpg``.

    Times are the bridge's local clock when the read arrived (cameras' clocks drift);
    the camera's text never reaches the path unsanitised.
    """
    plate = safe_file_part(read.plate, fallback="unknown")
    stamp = received.strftime("%H%M%S") + f"-{received.microsecond // 1000:03d}"
    name = f"{stamp}_{plate}_{safe_file_part(kind, fallback='picture')}.jpg"
    return folder / safe_file_part(camera, fallback="camera") / received.strftime("%Y-%m-%d") / name


class ImageFolder:
    def __init__(self, folder: Path, *, keep_days: float | None = None) -> None:
        self.folder = folder
        self.keep_days = keep_days

    def write(self, path: Path, data: bytes) -> bool:
        """Write ``data`` to ``path`` (inside the folder) atomically; False on failure."""
        if not path.resolve().is_relative_to(self.folder.resolve()):
            log.error("refusing to write a picture outside %s: %s", self.folder, path)
            return False
        tmp_name = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
            os.replace(tmp_name, path)
        except OSError as exc:
            log.warning("cannot write picture %s: %s", path, exc)
            if tmp_name is not None:
                Path(tmp_name).unlink(missing_ok=True)
            return False
        return True

    def prune(self, *, now: float | None = None) -> int:
        """Delete pictures older than ``keep_days`` and folders left empty; count deleted."""
        if self.keep_days is None or not self.folder.is_dir():
            return 0
        cutoff = (now if now is not None else time.time()) - self.keep_days * 86400
        deleted = 0
        for root, dirs, files in os.walk(self.folder, topdown=False):
            for name in files:
                file = Path(root, name)
                try:
                    if name.endswith(".jpg") and file.stat().st_mtime < cutoff:
                        file.unlink()
                        deleted += 1
                except OSError as exc:
                    log.warning("cannot delete old picture %s: %s", file, exc)
            for name in dirs:
                with contextlib.suppress(OSError):
                    Path(root, name).rmdir()  # only succeeds when empty
        if deleted:
            log.info("deleted %d pictures older than %g days", deleted, self.keep_days)
        return deleted
