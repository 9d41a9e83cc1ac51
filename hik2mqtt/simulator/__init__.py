"""The built-in camera simulator: the camera side of ISAPI, served on loopback.

``hik2mqtt simulate`` runs it for people trying the bridge without a camera; the tests
use it as a real HTTP peer and the bench as the camera. Its parts:

* ``templates``: what the camera says (its pictures and the text of its XML answers);
* ``encoders``: reads and their framing on the wire (alertStream parts, push bodies),
  what tests and the bench build without a server;
* ``state``: what the camera remembers (users and lock-out, outputs, barrier, linkage,
  plate list), behind a small thread-safe API;
* ``server``: ``Simulator``, the HTTP server and handler on a real socket.

Every name is re-exported here, so ``from hik2mqtt.simulator import ...`` keeps working.
"""

from hik2mqtt.simulator.encoders import (
    PUSH_BOUNDARY,
    SimRead,
    encode_part,
    encode_read,
    event_part,
    heartbeat_part,
    jpeg,
    make_read,
    multipart_reply,
    push_body,
    random_plate,
)
from hik2mqtt.simulator.server import STREAM_PATH, Simulator, Streams
from hik2mqtt.simulator.state import CameraState, RequestRecord
from hik2mqtt.simulator.templates import (
    ANPR_XML,
    DEVICE_INFO_XML,
    EVENT_TRIGGER_XML,
    HEARTBEAT_XML,
    IO_STATUS_XML,
    OTHER_EVENT_XML,
    PICTURE_INFO_XML,
    PLATE_JPEG,
    RESPONSE_STATUS_XML,
    USER_CHECK_XML,
    VEHICLE_DETECT_XML,
    VEHICLE_JPEG,
    XML_TYPE,
)

__all__ = [
    "ANPR_XML",
    "DEVICE_INFO_XML",
    "EVENT_TRIGGER_XML",
    "HEARTBEAT_XML",
    "IO_STATUS_XML",
    "OTHER_EVENT_XML",
    "PICTURE_INFO_XML",
    "PLATE_JPEG",
    "PUSH_BOUNDARY",
    "RESPONSE_STATUS_XML",
    "STREAM_PATH",
    "USER_CHECK_XML",
    "VEHICLE_DETECT_XML",
    "VEHICLE_JPEG",
    "XML_TYPE",
    "CameraState",
    "RequestRecord",
    "SimRead",
    "Simulator",
    "Streams",
    "encode_part",
    "encode_read",
    "event_part",
    "heartbeat_part",
    "jpeg",
    "make_read",
    "multipart_reply",
    "push_body",
    "random_plate",
]
