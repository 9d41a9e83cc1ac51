"""hik2mqtt: Hikvision ANPR cameras to MQTT."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hik2mqtt")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
