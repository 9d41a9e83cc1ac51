"""The built-in camera simulator: the camera side of ISAPI, served on loopback.

``hik2mqtt simulate`` runs it for people trying the bridge without a camera; the tests
use it as a real HTTP peer. It answers with Digest auth (MD5, ``qop=auth``, as Hikvision
does: ``shared/samples/digest-401-doc-example.txt``) and serves:

* ``GET /ISAPI/Event/notification/alertStream``: an endless ``multipart/mixed`` body with
  no length and no closing delimiter, HTTP/1.0 and close-delimited like real cameras
  (or HTTP/1.1 chunked), with heartbeats (``videoloss``/``inactive``) and plate reads,
  each followed by two JPEG pictures;
* ``GET /ISAPI/Traffic/MNPR/channels/<n>``: manual recognition, answered with a read and
  its pictures in a multipart body;
* ``GET /ISAPI/System/deviceInfo``.

The XML is modelled on a DeepinView ANPR camera's (``anpr-alert-iDS-2CD7A46G0-push.xml``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import queue
import random
import re
import secrets
import select
import socket
import ssl
import string
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

import requests

log = logging.getLogger(__name__)

# Two small real JPEGs (a yellow "plate" and a blue "vehicle"), made once with Pillow.
PLATE_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABQODxIPDRQSEBIXFRQYHjIhHhwcHj0sLiQySUBMS0dARkVQWnNiUFVt"
    "VkVGZIhlbXd7gYKBTmCNl4x9lnN+gXz/2wBDARUXFx4aHjshITt8U0ZTfHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8"
    "fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHz/wAARCAAYAGADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAA"
    "AAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAk"
    "M2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKT"
    "lJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QA"
    "HwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdh"
    "cRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hp"
    "anN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk"
    "5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDZeRUZFY4LttX3OCf5A037RF5nl7vm3+XjB+9t3Y/Lmo7uGSZ7"
    "by2ZdkpZmXGQNjDv7kVAlrMlyGYs4Fz5m5iMlfK2549+K+dUYtas7bstx3EUuzy33b0Eg4P3T0PtUR1C2WJ5Wkwi"
    "YySp6E4B6cg+tQaXbTWkIjlQvmNSTkZDAAFf8KabeW4gfzbdkkeSPcpK4CBwcDB7DP51XJDmtfQV3YuyXUMcpieQ"
    "K4QyEHsucZpYriOYkIW3DkhlKnHrgiswWN07rJIo3qhGSw52tGQPx2sfxq5GZZb4SPA8SJEVBYqdxJHoT0x+tJwi"
    "lowTZcooorIoKKKKACiiigAooooAKKKKACiiigAooooAKKKKACiiigD/2Q=="
)
VEHICLE_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABQODxIPDRQSEBIXFRQYHjIhHhwcHj0sLiQySUBMS0dARkVQWnNiUFVt"
    "VkVGZIhlbXd7gYKBTmCNl4x9lnN+gXz/2wBDARUXFx4aHjshITt8U0ZTfHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8"
    "fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHz/wAARCAAwAEADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAA"
    "AAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAk"
    "M2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKT"
    "lJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QA"
    "HwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdh"
    "cRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hp"
    "anN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk"
    "5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDLZwmM9+mBmkMiBQxPBOBSOGDq4G7AIIHv/wDqprRtKAG+QYPT"
    "HU13ts5LIf5qbiuTkHHQ4z9afVdY5CSzZ5dSV4x0H+fwqxQm2DCiiimIKKKKACiiigAooooAKKKKACiiigAooooA"
    "KKKKACiiigAooooA/9k="
)

STREAM_PATH = "/ISAPI/Event/notification/alertStream"
_MNPR_PATH = re.compile(r"^/ISAPI/Traffic/MNPR/channels/(\d+)$")
_OUTPUT_PATH = re.compile(r"^/ISAPI/System/IO/outputs/(\d+)/(trigger|status)$")
_BARRIER_PATH = re.compile(r"^/ISAPI/Parking/channels/(\d+)/barrierGate$")
_PLATES_PATH = re.compile(r"^/ISAPI/Traffic/channels/(\d+)/vehicleDetect/plates$")
_PLATE_PICTURE = re.compile(r"^/doc/ui/images/plate/(\d+)\.jpg$")
_XML_VALUE = re.compile(rb"<(outputState|ctrlMode)>\s*(\w+)\s*</")
_DIGEST_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')

HEARTBEAT_XML = """<EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">
<ipAddress>127.0.0.1</ipAddress>
<portNo>80</portNo>
<protocol>HTTP</protocol>
<macAddress>00:00:5e:00:53:01</macAddress>
<channelID>1</channelID>
<dateTime>{time}</dateTime>
<activePostCount>0</activePostCount>
<eventType>videoloss</eventType>
<eventState>inactive</eventState>
<eventDescription>videoloss alarm</eventDescription>
</EventNotificationAlert>
"""

ANPR_XML = """<?xml version="1.0" encoding="UTF-8"?>
<EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">
<ipAddress>127.0.0.1</ipAddress>
<portNo>80</portNo>
<protocol>HTTP</protocol>
<macAddress>00:00:5e:00:53:01</macAddress>
<channelID>{channel}</channelID>
<dateTime>{time}</dateTime>
<activePostCount>1</activePostCount>
<eventType>ANPR</eventType>
<eventState>active</eventState>
<eventDescription>ANPR</eventDescription>
<channelName>Simulated camera</channelName>
<ANPR>
<country>3</country>
<licensePlate>{plate}</licensePlate>
<line>1</line>
<direction>{direction}</direction>
<confidenceLevel>{confidence}</confidenceLevel>
<plateType>unknown</plateType>
<plateColor>white</plateColor>
<licenseBright>0</licenseBright>
<vehicleType>vehicle</vehicleType>
<vehicleInfo>
<index>1</index>
<colorDepth>2</colorDepth>
<color>blue</color>
<length>0</length>
<vehicleLogoRecog>1036</vehicleLogoRecog>
</vehicleInfo>
<pictureInfoList>
{pictures}</pictureInfoList>
<originalLicensePlate>{plate}</originalLicensePlate>
<vehicleListName>{list_name}</vehicleListName>
</ANPR>
<UUID>{event_id}</UUID>
<picNum>{pic_num}</picNum>
<isDataRetransmission>{retransmitted}</isDataRetransmission>
</EventNotificationAlert>
"""

PICTURE_INFO_XML = """<pictureInfo>
<fileName>{name}.jpg</fileName>
<type>{name}</type>
<dataType>0</dataType>
<absTime>{abs_time}</absTime>
</pictureInfo>
"""

DEVICE_INFO_XML = """<?xml version="1.0" encoding="UTF-8"?>
<DeviceInfo version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">
<deviceName>hik2mqtt simulator</deviceName>
<deviceID>00000000-0000-0000-0000-000000000001</deviceID>
<model>SIM-ANPR</model>
<serialNumber>SIM-ANPR0000000000000000</serialNumber>
<macAddress>00:00:5e:00:53:01</macAddress>
<firmwareVersion>V0.1.0</firmwareVersion>
<firmwareReleasedDate>build 261125</firmwareReleasedDate>
<deviceType>IPCamera</deviceType>
</DeviceInfo>
"""

RESPONSE_STATUS_XML = """<?xml version="1.0" encoding="UTF-8"?>
<ResponseStatus version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">
<requestURL>{url}</requestURL>
<statusCode>{code}</statusCode>
<statusString>{text}</statusString>
<subStatusCode>{sub}</subStatusCode>
</ResponseStatus>
"""

XML_TYPE = 'application/xml; charset="UTF-8"'

VEHICLE_DETECT_XML = """<?xml version="1.0" encoding="UTF-8"?>
<VehicleDetectCfg version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">
<enabled>true</enabled>
</VehicleDetectCfg>
"""

EVENT_TRIGGER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<EventTrigger version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">
<id>vehicledetection-1</id>
<eventType>vehicledetection</eventType>
<EventTriggerNotificationList>{rows}</EventTriggerNotificationList>
</EventTrigger>
"""

OTHER_EVENT_XML = """<EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">
<ipAddress>127.0.0.1</ipAddress>
<channelID>1</channelID>
<dateTime>{time}</dateTime>
<activePostCount>1</activePostCount>
<eventType>{type}</eventType>
<eventState>{state}</eventState>
<eventDescription>{type} alarm</eventDescription>
</EventNotificationAlert>
"""

IO_STATUS_XML = """<?xml version="1.0" encoding="UTF-8"?>
<IOPortStatus version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">
<ioPortID>{port}</ioPortID>
<ioPortType>output</ioPortType>
<ioState>{state}</ioState>
</IOPortStatus>
"""

USER_CHECK_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<userCheck>
<statusValue>401</statusValue>
<statusString>Unauthorized</statusString>
<lockStatus>{lock}</lockStatus>
<unlockTime>{unlock}</unlockTime>
<retryLoginTime>0</retryLoginTime>
</userCheck>
"""


def jpeg(base: bytes, *, size: int = 0, marker: bytes = b"") -> bytes:
    """A valid JPEG: ``base`` with comment segments holding ``marker`` and random padding.

    The padding makes each picture unique (so tests can compare bytes) and, with
    ``marker``, lets a picture carry a delimiter line inside it, as real JPEG data may.
    """
    filler = marker + os.urandom(max(0, size - len(base) - len(marker)))
    segments = []
    while filler:
        chunk, filler = filler[:65533], filler[65533:]
        segments.append(b"\xff\xfe" + (len(chunk) + 2).to_bytes(2, "big") + chunk)
    return base[:2] + b"".join(segments) + base[2:]


@dataclass(frozen=True, slots=True)
class SimRead:
    """A read the simulator made: its plate, XML and pictures (file name -> bytes)."""

    plate: str
    event_id: str
    xml: bytes
    pictures: dict[str, bytes] = field(repr=False)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - HTTP Digest is MD5


def random_plate() -> str:
    letters = "".join(random.choices(string.ascii_uppercase, k=2))  # noqa: S311 - not crypto
    return (
        f"{letters}{random.randint(10, 99)} {''.join(random.choices(string.ascii_uppercase, k=3))}"  # noqa: S311
    )


def make_read(
    plate: str | None = None,
    *,
    kinds: tuple[str, ...] = ("licensePlatePicture", "vehiclePicture"),
    picture_size: int = 0,
    marker: bytes = b"",
    retransmitted: bool = False,
    confidence: int = 97,
    direction: str = "forward",
    channel: int = 1,
    list_name: str = "otherList",
    taken: datetime | None = None,
) -> SimRead:
    plate = plate if plate is not None else random_plate()
    now = taken or datetime.now().astimezone()
    event_id = uuid.uuid4().hex
    infos = "".join(
        PICTURE_INFO_XML.format(name=kind, abs_time=now.strftime("%Y%m%d%H%M%S%f")[:17])
        for kind in kinds
    )
    xml = ANPR_XML.format(
        channel=channel,
        time=now.isoformat(timespec="seconds"),
        plate=escape(plate),
        direction=direction,
        confidence=confidence,
        pictures=infos,
        list_name=list_name,
        event_id=event_id,
        pic_num=len(kinds),
        retransmitted="true" if retransmitted else "false",
    ).encode()
    pictures = {
        f"{kind}.jpg": jpeg(
            PLATE_JPEG if kind == "licensePlatePicture" else VEHICLE_JPEG,
            size=picture_size,
            marker=marker,
        )
        for kind in kinds
    }
    return SimRead(plate=plate, event_id=event_id, xml=xml, pictures=pictures)


def encode_part(
    boundary: str,
    body: bytes,
    *,
    content_type: str,
    name: str | None = None,
    content_length: bool = True,
) -> bytes:
    """One part as cameras frame it: delimiter, headers, blank line, body, CRLF."""
    headers = [f"--{boundary}", f"Content-Type: {content_type}"]
    if name is not None:
        headers.append(f'Content-Disposition: attachment; filename="{name}"')
    if content_length:
        headers.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body + b"\r\n"


def encode_read(read: SimRead, boundary: str = "boundary", *, content_length: bool = True) -> bytes:
    """A read and its pictures as they follow each other on the stream."""
    out = [
        encode_part(
            boundary,
            read.xml,
            content_type='application/xml; charset="UTF-8"',
            content_length=content_length,
        )
    ]
    out += [
        encode_part(
            boundary, data, content_type="image/jpeg", name=name, content_length=content_length
        )
        for name, data in read.pictures.items()
    ]
    return b"".join(out)


def heartbeat_part(boundary: str = "boundary", *, content_length: bool = True) -> bytes:
    body = HEARTBEAT_XML.format(time=datetime.now().astimezone().isoformat(timespec="seconds"))
    return encode_part(
        boundary,
        body.encode(),
        content_type='application/xml; charset="UTF-8"',
        content_length=content_length,
    )


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str
    authorized: bool
    at: float  # time.perf_counter() when the request line and headers had arrived


class Simulator:
    """A fake Hikvision ANPR camera on a real socket. Start it, then point the bridge at it."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "admin",
        password: str = "simulator",  # noqa: S107 - the simulator's documented default
        boundary: str = "boundary",
        declared_boundary: str | None = None,
        http10: bool = True,
        chunked: bool = False,
        content_length: bool = True,
        heartbeat: float | None = 10.0,
        interval: float | None = None,
        picture_size: int = 0,
        lock_after: int | None = None,
        tls: ssl.SSLContext | None = None,
        answer_delay: float = 0.0,
    ) -> None:
        self.username = username
        self.password = password
        self.realm = "IP Camera(SIM01)"
        self.boundary = boundary
        self.declared_boundary = declared_boundary or boundary
        self.http10 = http10 and not chunked
        self.chunked = chunked
        self.content_length = content_length
        self.heartbeat = heartbeat
        self.interval = interval
        self.picture_size = picture_size
        self.lock_after = lock_after
        self.mnpr_reply: tuple[int, str, bytes] | None = None  # override: status, type, body
        self.requests: list[RequestRecord] = []
        self.notify_center = True  # the vehicle detection event's "Notify Surveillance Center"
        self.io_supported = True  # False: answer notSupport on System/IO, like DS-TCG405-E
        self.outputs: dict[int, str] = {}  # output -> "high" | "low", as last set
        self.puts: list[tuple[str, bytes]] = []  # every PUT: path and body
        # Poll mode: the camera's plate list, (picName, plate), and each entry's picture.
        self.plates: list[tuple[str, str]] = []
        self.plate_pictures: dict[str, bytes] = {}
        self._pic_counter = 0
        self.last_mnpr: SimRead | None = None
        self.failed_logins = 0
        self.writes = 0  # stream writes so far, and when the last one was on the socket
        self.last_write_at = 0.0
        self._nonces: set[str] = set()
        self._streams: list[queue.Queue[bytes | None]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self.answer_delay = answer_delay  # a slow camera: seconds before answering a stream
        self.tls = tls is not None
        if tls is not None:  # HTTPS: the handshake happens in each request's thread
            self._server.socket = tls.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._threads: list[threading.Thread] = []

    # -- life cycle -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> Simulator:
        serve = threading.Thread(target=self._server.serve_forever, name="sim-http", daemon=True)
        serve.start()
        self._threads.append(serve)
        if self.interval:
            auto = threading.Thread(target=self._auto_reads, name="sim-reads", daemon=True)
            auto.start()
            self._threads.append(auto)
        return self

    def stop(self) -> None:
        self._stop.set()
        self.cut_streams()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- control (tests and the CLI) ------------------------------------------------------

    @property
    def stream_count(self) -> int:
        with self._lock:
            return len(self._streams)

    def wait_for_streams(self, count: int = 1, timeout: float = 10.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self._streams) >= count, timeout)

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are to every open stream."""
        with self._lock:
            for stream in self._streams:
                stream.put(data)

    def emit_read(self, plate: str | None = None, **options: object) -> SimRead:
        """Make a read and send it, with its pictures, on every open stream."""
        options.setdefault("picture_size", self.picture_size)
        if self.content_length:
            options.setdefault("marker", f"\r\n--{self.boundary}\r\n".encode())
        read = make_read(plate, **options)  # type: ignore[arg-type]
        self.send_raw(encode_read(read, self.boundary, content_length=self.content_length))
        return read

    def add_plate(self, plate: str) -> str:
        """Poll mode: add a read to the plate list; returns its picName."""
        self._pic_counter += 1
        pic_name = datetime.now().strftime("%Y%m%d%H%M%S") + f"{self._pic_counter % 10000:04d}"
        with self._lock:
            self.plates.append((pic_name, plate))
            self.plate_pictures[pic_name] = jpeg(VEHICLE_JPEG, marker=pic_name.encode())
        return pic_name

    def plates_xml(self) -> bytes:
        """The plate list as a traffic camera answers it: unsorted, old entries repeated."""
        with self._lock:
            entries = list(self.plates)
        entries += entries[: len(entries) // 2]  # repeats
        random.shuffle(entries)
        rows = "".join(
            f"<Plate><captureTime>{pic[:8]}T{pic[8:14]}+0000</captureTime>"
            f"<plateNumber>{escape(plate)}</plateNumber><picName>{pic}</picName>"
            "<country>GBR</country><laneNo>1</laneNo><direction>forward</direction>"
            "<matchingResult>otherlist</matchingResult></Plate>\n"
            for pic, plate in entries
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Plates version="2.0" xmlns="http://www.std-cgi.com/ver20/XMLSchema">\n'
            f"{rows}</Plates>\n"
        ).encode()

    def push(
        self, url: str, read: SimRead, *, boundary: str = "---------------------------7e13971310878"
    ) -> int:
        """Push mode: POST a read and its pictures to ``url``, as an ITS camera does
        (``shared/samples/push-anpr-multipart-its-camera.txt``); returns the HTTP status."""
        parts = [
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="anpr.xml";filename="anpr.xml"\r\n'
            'Content-Type: application/xml; charset="UTF-8"\r\n'
            f"Content-Length: {len(read.xml)}\r\n\r\n".encode()
            + read.xml
            + b"\r\n"
        ]
        for name, data in read.pictures.items():
            parts.append(
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data;name="{name}";filename="{name}"\r\n'
                f"Content-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                + data
                + b"\r\n"
            )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        response = requests.post(
            url,
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            timeout=10,
        )
        return response.status_code

    def emit_event(self, event_type: str, state: str = "active") -> None:
        """Send a non-ANPR event (motion, line crossing...) on every open stream."""
        when = datetime.now().astimezone().isoformat(timespec="seconds")
        body = OTHER_EVENT_XML.format(type=event_type, state=state, time=when).encode()
        self.send_raw(
            encode_part(
                self.boundary, body, content_type=XML_TYPE, content_length=self.content_length
            )
        )

    def cut_streams(self) -> None:
        """Close every open stream (as a camera reboot would)."""
        with self._lock:
            for stream in self._streams:
                stream.put(None)

    def count(self, path_prefix: str, *, authorized: bool | None = True) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if r.path.startswith(path_prefix)
                and (authorized is None or r.authorized == authorized)
            )

    # -- internals ------------------------------------------------------------------------

    def _auto_reads(self) -> None:
        assert self.interval is not None
        while not self._stop.wait(self.interval):
            read = self.emit_read()
            log.info("simulator: read %s", read.plate)

    def _new_nonce(self) -> str:
        nonce = secrets.token_hex(16)
        with self._lock:
            self._nonces.add(nonce)
        return nonce

    def _authorized(self, method: str, header: str | None) -> bool:
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

    def _register(self) -> queue.Queue[bytes | None]:
        stream: queue.Queue[bytes | None] = queue.Queue()
        with self._changed:
            self._streams.append(stream)
            self._changed.notify_all()
        return stream

    def _unregister(self, stream: queue.Queue[bytes | None]) -> None:
        with self._changed:
            self._streams.remove(stream)
            self._changed.notify_all()

    def mnpr_body(self) -> tuple[int, str, bytes]:
        if self.mnpr_reply is not None:
            return self.mnpr_reply
        read = make_read(picture_size=self.picture_size)
        self.last_mnpr = read
        token = "MIME_boundary"  # noqa: S105 - a multipart boundary, not a secret
        body = encode_read(read, token) + f"--{token}--\r\n".encode()
        return 200, f"multipart/form-data; boundary={token}", body


def _make_handler(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes
        server_version = "App-webs/"
        sys_version = ""

        def log_message(self, format: str, *args: object) -> None:
            log.debug("simulator: %s", format % args)

        def _send(
            self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def handle(self) -> None:
            if isinstance(self.connection, ssl.SSLSocket):
                try:
                    self.connection.do_handshake()
                except (OSError, ssl.SSLError):
                    return  # a client that doesn't trust us, or isn't speaking TLS
            super().handle()

        def _admit(self, method: str) -> str | None:
            """Record the request; its path when authorised, else None (401 sent)."""
            authorized = sim._authorized(method, self.headers.get("Authorization"))
            path = self.path.split("?", 1)[0]
            with sim._lock:
                sim.requests.append(RequestRecord(method, path, authorized, time.perf_counter()))
            if not authorized:
                self._challenge()
                return None
            return path

        def do_GET(self) -> None:
            path = self._admit("GET")
            if path is None:
                return
            if path == STREAM_PATH:
                self._stream()
            elif _MNPR_PATH.match(path) is not None:
                status, ctype, body = sim.mnpr_body()
                self._send(status, body, ctype)
            elif (out := _OUTPUT_PATH.match(path)) is not None and out.group(2) == "status":
                if not sim.io_supported:
                    self._not_supported(path)
                    return
                state = "active" if sim.outputs.get(int(out.group(1))) == "high" else "inactive"
                self._send(
                    200, IO_STATUS_XML.format(port=out.group(1), state=state).encode(), XML_TYPE
                )
            elif (pic := _PLATE_PICTURE.match(path)) and pic.group(1) in sim.plate_pictures:
                self._send(200, sim.plate_pictures[pic.group(1)], "image/jpeg")
            elif path.startswith("/ISAPI/Traffic/channels/") and path.endswith("/vehicleDetect"):
                self._send(200, VEHICLE_DETECT_XML.encode(), XML_TYPE)
            elif path.startswith("/ISAPI/Event/triggers/vehicledetection-"):
                methods = ["IO", "center"] if sim.notify_center else ["IO"]
                rows = "".join(
                    f"<EventTriggerNotification><id>{m}</id><notificationMethod>{m}"
                    "</notificationMethod></EventTriggerNotification>"
                    for m in methods
                )
                self._send(200, EVENT_TRIGGER_XML.format(rows=rows).encode(), XML_TYPE)
            elif path == "/ISAPI/System/deviceInfo":
                self._send(200, DEVICE_INFO_XML.encode(), XML_TYPE)
            else:
                self._not_supported(path, status=404)

        def _not_supported(self, path: str, *, status: int = 403) -> None:
            body = RESPONSE_STATUS_XML.format(
                url=path, code=4, text="Invalid Operation", sub="notSupport"
            )
            self._send(status, body.encode(), XML_TYPE)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(min(length, 65536))
            path = self._admit("POST")
            if path is None:
                return
            if _PLATES_PATH.match(path) is None:
                self._not_supported(path)
                return
            self._send(200, sim.plates_xml(), XML_TYPE)

        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 65536))
            path = self._admit("PUT")
            if path is None:
                return
            value = _XML_VALUE.search(body)
            out = _OUTPUT_PATH.match(path)
            if out is not None and out.group(2) == "trigger" and sim.io_supported and value:
                sim.outputs[int(out.group(1))] = value.group(2).decode()
            elif _BARRIER_PATH.match(path) is None or value is None:
                self._not_supported(path)
                return
            with sim._lock:
                sim.puts.append((path, body))
            ok = RESPONSE_STATUS_XML.format(url=path, code=1, text="OK", sub="ok")
            self._send(200, ok.encode(), XML_TYPE)

        def _challenge(self) -> None:
            if self.headers.get("Authorization"):
                sim.failed_logins += 1
            locked = sim.lock_after is not None and sim.failed_logins >= sim.lock_after
            body = USER_CHECK_XML.format(
                lock="lock" if locked else "unlock", unlock=210 if locked else 0
            )
            challenge = (
                f'Digest qop="auth", realm="{sim.realm}", nonce="{sim._new_nonce()}", stale="FALSE"'
            )
            self._send(
                401,
                body.encode(),
                'application/xml; charset="UTF-8"',
                {"WWW-Authenticate": challenge},
            )

        def _write(self, data: bytes) -> None:
            if sim.chunked:
                data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
            self.wfile.write(data)
            sim.last_write_at = time.perf_counter()
            sim.writes += 1

        def _client_gone(self) -> bool:
            """Whether the client closed its end (seen without writing to it)."""
            sock = self.connection
            try:
                readable, _, _ = select.select([sock], [], [], 0)
                if not readable:
                    return False
                if isinstance(sock, ssl.SSLSocket):
                    return sock.pending() == 0 and not sock.recv(1)
                return not sock.recv(1, socket.MSG_PEEK)
            except (OSError, ValueError):
                return True

        def _stream(self) -> None:
            if sim.answer_delay:
                sim._stop.wait(sim.answer_delay)
            version = "HTTP/1.0" if sim.http10 else "HTTP/1.1"
            head = [
                f"{version} 200 OK",
                "MIME-Version: 1.0",
                f"Content-Type: multipart/mixed; boundary={sim.declared_boundary}",
            ]
            if sim.chunked:
                head.append("Transfer-Encoding: chunked")
            else:
                head.append("Connection: close")
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode())
            self.close_connection = True
            stream = sim._register()
            try:
                while not sim._stop.is_set():
                    try:
                        item = stream.get(timeout=sim.heartbeat or 0.2)
                    except queue.Empty:
                        if sim.heartbeat:
                            self._write(
                                heartbeat_part(sim.boundary, content_length=sim.content_length)
                            )
                        elif self._client_gone():
                            break
                        continue
                    if item is None:
                        break
                    self._write(item)
            except OSError:
                pass  # the client went away
            finally:
                sim._unregister(stream)

    return Handler
