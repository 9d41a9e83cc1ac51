"""What the simulated camera remembers, behind a small thread-safe API.

Its users and lock-out (HTTP Digest, MD5, ``qop=auth``, as Hikvision does:
``shared/samples/digest-401-doc-example.txt``), the requests it has seen, its outputs and
barrier commands, the vehicle detection event's linkage, its plate list (poll mode) and
manual recognition. The HTTP handler (``server.py``) reads and changes the camera only
through these methods; tests read the same attributes through ``Simulator``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from hik2mqtt.simulator.encoders import SimRead, jpeg, make_read
from hik2mqtt.simulator.templates import VEHICLE_JPEG

REALM = "IP Camera(SIM01)"
_DIGEST_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - HTTP Digest is MD5


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str
    authorized: bool
    at: float  # time.perf_counter() when the request line and headers had arrived


class CameraState:
    """One simulated camera's state. Attributes are for reading (tests) and for the settings
    a test changes (``io_supported``, ``notify_center``, ``mnpr_reply``); the methods are
    what the HTTP side may do."""

    def __init__(self, *, username: str, password: str, lock_after: int | None = None) -> None:
        self.username = username
        self.password = password
        self.realm = REALM
        self.lock_after = lock_after  # failed logins before the account locks (None: never)
        self.failed_logins = 0
        self.requests: list[RequestRecord] = []
        self.io_supported = True  # False: answer notSupport on System/IO, like DS-TCG405-E
        self.outputs: dict[int, str] = {}  # output -> "high" | "low", as last set
        self.puts: list[tuple[str, bytes]] = []  # every accepted PUT: path and body
        self.notify_center = True  # the vehicle detection event's "Notify Surveillance Center"
        # Poll mode: the camera's plate list, (picName, plate), and each entry's picture.
        self.plates: list[tuple[str, str]] = []
        self.plate_pictures: dict[str, bytes] = {}
        self.mnpr_reply: tuple[int, str, bytes] | None = None  # override: status, type, body
        self.last_mnpr: SimRead | None = None
        self._nonces: set[str] = set()
        self._pic_counter = 0
        self._lock = threading.Lock()

    # -- users and lock-out -----------------------------------------------------------------

    def authorized(self, method: str, header: str | None) -> bool:
        """Whether an ``Authorization`` header is a valid Digest answer to one of our nonces."""
        if not header or not header.lower().startswith("digest "):
            return False
        params = {
            m.group(1).lower(): m.group(2) or m.group(3) or ""
            for m in _DIGEST_PARAM.finditer(header[7:])
        }
        with self._lock:
            known = params.get("nonce") in self._nonces
        if not known or params.get("username") != self.username:
            return False
        ha1 = _md5(f"{self.username}:{self.realm}:{self.password}")
        ha2 = _md5(f"{method}:{params.get('uri', '')}")
        expected = _md5(
            f"{ha1}:{params['nonce']}:{params.get('nc', '')}:{params.get('cnonce', '')}:"
            f"{params.get('qop', '')}:{ha2}"
        )
        return secrets.compare_digest(expected, params.get("response", ""))

    def refuse(self, *, had_credentials: bool) -> tuple[str, bool]:
        """A request without valid credentials: a failed login if it carried some.

        Returns a new nonce for the challenge and whether the account is now locked."""
        nonce = secrets.token_hex(16)
        with self._lock:
            if had_credentials:
                self.failed_logins += 1
            self._nonces.add(nonce)
            locked = self.lock_after is not None and self.failed_logins >= self.lock_after
        return nonce, locked

    # -- requests seen ----------------------------------------------------------------------

    def record(self, method: str, path: str, authorized: bool) -> None:
        """A request whose line and headers have just arrived."""
        with self._lock:
            self.requests.append(RequestRecord(method, path, authorized, time.perf_counter()))

    def count(self, path_prefix: str, *, authorized: bool | None = True) -> int:
        """Requests seen whose path starts with ``path_prefix`` (authorised ones by default)."""
        with self._lock:
            return sum(
                1
                for r in self.requests
                if r.path.startswith(path_prefix)
                and (authorized is None or r.authorized == authorized)
            )

    # -- outputs, barrier, linkage ----------------------------------------------------------

    def output_active(self, port: int) -> bool:
        with self._lock:
            return self.outputs.get(port) == "high"

    def set_output(self, port: int, level: str) -> None:
        with self._lock:
            self.outputs[port] = level

    def record_put(self, path: str, body: bytes) -> None:
        """A PUT the camera accepted (output trigger or barrier command)."""
        with self._lock:
            self.puts.append((path, body))

    def notification_methods(self) -> list[str]:
        """The vehicle detection event's linkage: always IO, the centre when it is on."""
        return ["IO", "center"] if self.notify_center else ["IO"]

    # -- plate list (poll mode) -------------------------------------------------------------

    def add_plate(self, plate: str) -> str:
        """Add a read to the plate list; returns its picName."""
        with self._lock:
            self._pic_counter += 1
            counter = self._pic_counter
        pic_name = datetime.now().strftime("%Y%m%d%H%M%S") + f"{counter % 10000:04d}"
        with self._lock:
            self.plates.append((pic_name, plate))
            self.plate_pictures[pic_name] = jpeg(VEHICLE_JPEG, marker=pic_name.encode())
        return pic_name

    def plate_entries(self) -> list[tuple[str, str]]:
        """The plate list, (picName, plate), in the order added (a copy)."""
        with self._lock:
            return list(self.plates)

    def plate_picture(self, pic_name: str) -> bytes | None:
        with self._lock:
            return self.plate_pictures.get(pic_name)

    # -- manual recognition -----------------------------------------------------------------

    def manual_read(self, *, picture_size: int = 0) -> SimRead:
        """A new read for a manual recognition request, remembered as ``last_mnpr``."""
        read = make_read(picture_size=picture_size)
        self.last_mnpr = read
        return read
