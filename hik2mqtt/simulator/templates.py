"""What the simulated camera says: its pictures and the text of its XML answers.

Fixed content only; the encoders (``encoders.py``) frame it for the wire and the server
(``server.py``) chooses which answer a request gets. The XML is modelled on a DeepinView
ANPR camera's (``shared/samples/anpr-alert-iDS-2CD7A46G0-push.xml``) and a traffic camera's
plate list (``shared/samples/vehicleDetect-plates-response.xml``).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from xml.sax.saxutils import escape

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


def response_status(url: str, *, ok: bool) -> bytes:
    """ISAPI's answer to a command: ``OK`` or ``notSupport``."""
    if ok:
        return RESPONSE_STATUS_XML.format(url=url, code=1, text="OK", sub="ok").encode()
    return RESPONSE_STATUS_XML.format(
        url=url, code=4, text="Invalid Operation", sub="notSupport"
    ).encode()


def io_status(port: str, *, active: bool) -> bytes:
    """An output's state as ``GET /ISAPI/System/IO/outputs/<n>/status`` answers it."""
    return IO_STATUS_XML.format(port=port, state="active" if active else "inactive").encode()


def user_check(*, locked: bool) -> bytes:
    """The body of a 401: whether the account is locked, and for how long."""
    return USER_CHECK_XML.format(
        lock="lock" if locked else "unlock", unlock=210 if locked else 0
    ).encode()


def event_trigger(methods: Iterable[str]) -> bytes:
    """The vehicle detection event's linkage: one row per notification method."""
    rows = "".join(
        f"<EventTriggerNotification><id>{m}</id><notificationMethod>{m}"
        "</notificationMethod></EventTriggerNotification>"
        for m in methods
    )
    return EVENT_TRIGGER_XML.format(rows=rows).encode()


def plate_list_xml(entries: Iterable[tuple[str, str]]) -> bytes:
    """A plate list, one ``<Plate>`` per (picName, plate), in the order given."""
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
