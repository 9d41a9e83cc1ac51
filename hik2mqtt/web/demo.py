"""A stand-in bridge for the page: tests, the screenshots script and the web bench use it.

It keeps what the page asked for (``submitted``), validates commands like the bridge's
``commands.check_value`` and refuses a second trigger within ``trigger_interval``.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

from hik2mqtt.commands import check_value
from hik2mqtt.core.wire import CommandKind
from hik2mqtt.plates import Lists, ListsFile, normalize
from hik2mqtt.web.backend import (
    CameraView,
    CommandOutcome,
    ListsFormat,
    ReadRecord,
)


@dataclass
class Submitted:
    camera: str
    kind: CommandKind
    output: int | None
    value: str


@dataclass
class FakeBackend:
    views: list[CameraView] = field(default_factory=list)
    pictures: dict[tuple[str, str], bytes] = field(default_factory=dict)
    lists_path: Path | None = None
    trigger_interval: float = 0.0
    submitted: list[Submitted] = field(default_factory=list)
    reloads: int = 0
    forgotten: list[str] = field(default_factory=list)  # cameras forget_pictures was told
    _last_trigger: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _lists: ListsFile | None = None

    def cameras(self) -> list[CameraView]:
        with self._lock:
            return list(self.views)

    def set_online(self, name: str, online: bool) -> None:
        with self._lock:
            self.views = [
                CameraView(
                    v.name,
                    v.display_name,
                    online,
                    v.mode,
                    "online" if online else "offline",
                    v.outputs,
                    v.barrier,
                    v.gate,
                )
                if v.name == name
                else v
                for v in self.views
            ]

    def latest_picture(self, camera: str, kind: str, event_id: str | None = None) -> bytes | None:
        return self.pictures.get((camera, kind))  # the demo's reads share their pictures

    def forget_pictures(self, camera: str, kinds: Collection[str] = ()) -> None:
        with self._lock:
            self.forgotten.append(camera)
            for key in [key for key in self.pictures if key[0] == camera]:
                del self.pictures[key]

    def submit(
        self, camera: str, kind: CommandKind, output: int | None, value: str
    ) -> CommandOutcome:
        problem = check_value(kind, value)
        if problem is not None:
            return CommandOutcome(False, problem)
        view = next((v for v in self.cameras() if v.name == camera), None)
        if view is None:
            return CommandOutcome(False, "no such camera")
        if kind == "output" and output not in view.outputs:
            return CommandOutcome(False, f"output {output} is not one of this camera's")
        if kind == "barrier" and not view.barrier:
            return CommandOutcome(False, "this camera has no barrier")
        with self._lock:
            if kind == "trigger":
                now = time.monotonic()
                last = self._last_trigger.get(camera)
                if last is not None and now - last < self.trigger_interval:
                    return CommandOutcome(False, "too soon after the last trigger")
                self._last_trigger[camera] = now
            self.submitted.append(Submitted(camera, kind, output, value))
        return CommandOutcome(True, "")

    def lists_file(self) -> tuple[Path | None, ListsFormat]:
        path = self.lists_path
        return path, "csv" if path is not None and path.suffix.lower() == ".csv" else "yaml"

    def reload_lists(self) -> bool:
        self.reloads += 1
        if self._lists is None or self._lists.path != self.lists_path:
            self._lists = ListsFile(self.lists_path)
            return True
        return self._lists.reload()

    @property
    def lists(self) -> Lists:
        return self._lists.lists if self._lists is not None else Lists()


def camera(
    name: str, *, outputs: Iterable[int] = (1,), barrier: bool = False, online: bool = True
) -> CameraView:
    return CameraView(
        name=name,
        display_name=name.replace("_", " ").title(),
        online=online,
        mode="stream",
        status="online" if online else "offline",
        outputs=tuple(outputs),
        barrier=barrier,
        gate=True,
    )


def record(
    camera: str,
    plate: str | None,
    *,
    received: datetime | None = None,
    confidence: int = 95,
    direction: str = "forward",
    match: str | None = None,
    duplicate: bool = False,
    retransmitted: bool = False,
    gate: tuple[bool, str] | None = None,
    pictures: dict[str, Path | None] | None = None,
) -> ReadRecord:
    """A read as the bridge would hand it over."""
    when = received or datetime.now().astimezone()
    return ReadRecord(
        camera=camera,
        plate=plate,
        normalized=normalize(plate),
        received=when,
        time=when.isoformat(timespec="seconds"),
        confidence=confidence,
        direction=direction,
        match=match,
        duplicate=duplicate,
        retransmitted=retransmitted,
        gate_open=gate[0] if gate else None,
        gate_reason=gate[1] if gate else None,
        event_id=f"{camera}-{plate}-{when.timestamp()}",
        pictures=pictures if pictures is not None else {"plate": None, "vehicle": None},
        payload={"camera": camera, "plate": plate},
    )


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def chromium(width: int = 1200, height: int = 900) -> WebDriver:
    """Debian's headless Chromium through chromium-driver, with a fresh profile and nothing
    that calls home (tests and scripts/screenshots; needs selenium). ``quit_chromium()``
    it afterwards."""
    from selenium import webdriver  # noqa: PLC0415 - only tests and scripts drive a browser
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    if CHROMIUM is None or CHROMEDRIVER is None:
        raise RuntimeError("needs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="hik2mqtt-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={max(width, 500)},{height}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    # Headless windows are at least 500 px wide: a phone's width is emulated instead.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    _profiles[id(driver)] = profile
    return driver


_profiles: dict[int, str] = {}


def quit_chromium(driver: WebDriver) -> None:
    driver.quit()
    profile = _profiles.pop(id(driver), None)
    if profile is not None:
        shutil.rmtree(profile, ignore_errors=True)
