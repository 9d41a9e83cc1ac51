"""The reference reader: the common way an alertStream is read today, for comparison.

requests with ``iter_content(chunk_size=1024)``, each chunk appended to a bytes buffer
that is scanned for the boundary; a part is cut out when the *next* delimiter arrives;
the XML part goes through xmltodict and is published as JSON, pictures as bytes. For the
trigger benchmark it also listens on ``ref/<camera>/trigger`` and calls MNPR with a fresh
requests call, as a typical automation script does.

Run: python bench/reference.py --camera NAME=HOST:PORT [--camera ...] --mqtt HOST:PORT
"""

from __future__ import annotations

import argparse
import json
import signal
import threading

import paho.mqtt.client as paho
import requests
import xmltodict
from paho.mqtt.enums import CallbackAPIVersion
from requests.auth import HTTPDigestAuth

USER, PASSWORD = "admin", "simulator"


def read_camera(name: str, base: str, client: paho.Client, stop: threading.Event) -> None:
    auth = HTTPDigestAuth(USER, PASSWORD)
    while not stop.is_set():
        try:
            response = requests.get(
                base + "/ISAPI/Event/notification/alertStream",
                auth=auth,
                stream=True,
                timeout=(5, 300),
            )
            boundary = response.headers["Content-Type"].split("boundary=")[1].strip()
            delimiter = b"--" + boundary.encode()
            buf = b""
            picture = 0
            for chunk in response.iter_content(chunk_size=1024):
                buf += chunk
                while True:
                    start = buf.find(delimiter)
                    end = buf.find(delimiter, start + len(delimiter)) if start >= 0 else -1
                    if end < 0:
                        break
                    part = buf[start + len(delimiter) : end]
                    buf = buf[end:]
                    headers, _, body = part.partition(b"\r\n\r\n")
                    if b"xml" in headers.lower():
                        doc = xmltodict.parse(body.strip())
                        alert = doc.get("EventNotificationAlert", {})
                        if alert.get("eventType") == "ANPR":
                            picture = 0
                            client.publish(f"ref/{name}/plate", json.dumps(alert), qos=1)
                    elif b"image/jpeg" in headers.lower():
                        picture += 1
                        client.publish(f"ref/{name}/image/{picture}", body[:-2], qos=1, retain=True)
        except requests.RequestException:
            stop.wait(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--camera", action="append", default=[], help="NAME=HOST:PORT")
    parser.add_argument("--mqtt", default="127.0.0.1:1883")
    args = parser.parse_args()
    cameras = dict(c.split("=", 1) for c in args.camera)
    host, port = args.mqtt.rsplit(":", 1)
    stop = threading.Event()

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        name = message.topic.split("/")[1]
        threading.Thread(target=trigger, args=(name,), daemon=True).start()

    def trigger(name: str) -> None:
        requests.get(
            f"http://{cameras[name]}/ISAPI/Traffic/MNPR/channels/1",
            auth=HTTPDigestAuth(USER, PASSWORD),
            timeout=10,
        )

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="reference-reader")
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe("ref/+/trigger", qos=1)
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(100)
    client.connect(host, int(port))
    client.loop_start()
    for name, where in cameras.items():
        threading.Thread(
            target=read_camera, args=(name, f"http://{where}", client, stop), daemon=True
        ).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    client.loop_stop()


if __name__ == "__main__":
    main()
