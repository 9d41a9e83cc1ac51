"""The page in a real browser: Debian's headless Chromium driven through chromium-driver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from hik2mqtt.simulator import PLATE_JPEG, VEHICLE_JPEG, Simulator, encode_read, make_read
from hik2mqtt.simulator.encoders import encode_part
from hik2mqtt.simulator.templates import XML_TYPE
from hik2mqtt.web.demo import (
    CHROMEDRIVER,
    CHROMIUM,
    FakeBackend,
    camera,
    chromium,
    quit_chromium,
    record,
)
from hik2mqtt.web.server import WebService
from tests.conftest import (
    AnyBroker,
    RunBridge,
    bridge_settings,
    camera_config,
    free_port,
    wait_until,
)

PASSWORD = "correct horse battery"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
        "chromium-driver)",
    ),
]


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    driver = chromium()
    yield driver
    quit_chromium(driver)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[WebService, FakeBackend, Path]]:
    lists = tmp_path / "lists.yaml"
    lists.write_text("lists:\n  allow:\n    plates:\n      - plate: AB12CDE\n        name: Alice\n")
    backend = FakeBackend(
        views=[camera("gate", outputs=(1,), barrier=True)],
        lists_path=lists,
    )
    images = tmp_path / "images"
    images.mkdir()
    service = WebService(
        backend=backend, host="127.0.0.1", port=0, password=PASSWORD, images_dir=images
    )
    service.start()
    yield service, backend, images
    service.stop()


def base(service: WebService) -> str:
    return f"http://127.0.0.1:{service.port}"


def log_in(driver: WebDriver, url: str, password: str = PASSWORD) -> None:
    """Open the page at ``url`` and send its login form."""
    driver.get(url + "/")
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def open_live(driver: WebDriver, url: str) -> None:
    """Log in, and wait until the page's live feed is open."""
    log_in(driver, url)
    wait_until(lambda: find(driver, "#feed.open"), timeout=15)


def find(driver: WebDriver, css: str) -> WebElement | None:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0] if found else None


def texts(driver: WebDriver, css: str) -> list[str]:
    """The text of every element matching ``css``, read in one go (no stale elements)."""
    try:
        found: Any = driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", css
        )
    except WebDriverException:  # the page is being replaced: ask again
        return []
    return [str(text) for text in found]


def image_loaded(driver: WebDriver, img: WebElement) -> bool:
    loaded: Any = driver.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", img
    )
    return bool(loaded)


def test_live_read_search_csv_read_now_and_lists(
    browser: WebDriver, site: tuple[WebService, FakeBackend, Path]
) -> None:
    """Logged in, the page shows a read as it arrives with its pictures, finds it in the
    history, exports it as CSV, sends "read now" to the backend and saves an edited list."""
    service, backend, images = site
    open_live(browser, base(service))
    (images / "p.jpg").write_bytes(PLATE_JPEG)
    (images / "v.jpg").write_bytes(VEHICLE_JPEG)
    service.read(
        record(
            "gate",
            "AB12CDE",
            match="allow",
            gate=(True, "on list 'allow': Alice"),
            pictures={"plate": images / "p.jpg", "vehicle": images / "v.jpg"},
        )
    )
    item = wait_until(lambda: find(browser, "#reads li.read"), timeout=15)
    assert item.find_element(By.CSS_SELECTOR, ".plate").text == "AB12CDE"
    assert "on list allow" in item.text
    assert "gate opened" in item.text
    pictures = item.find_elements(By.CSS_SELECTOR, "img.picture")
    assert len(pictures) == 2
    wait_until(lambda: all(image_loaded(browser, img) for img in pictures))

    browser.find_element(By.XPATH, "//button[text()='Read now']").click()
    wait_until(lambda: backend.submitted)
    assert (backend.submitted[0].camera, backend.submitted[0].kind) == ("gate", "trigger")
    wait_until(lambda: "sent" in browser.find_element(By.ID, "status").text)

    service.read(record("gate", "ZZ99ZZZ"))
    assert service.history.flush()
    browser.find_element(By.CSS_SELECTOR, "[data-tab=history]").click()
    plate = browser.find_element(By.CSS_SELECTOR, "#search input[name=plate]")
    plate.send_keys("ab 12 cde")
    browser.find_element(By.CSS_SELECTOR, "#search button[type=submit]").click()
    wait_until(lambda: texts(browser, "#results .plate") == ["AB12CDE"])
    csv_text = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(document.getElementById('csv').href).then(r => r.text()).then(done);"
    )
    lines = str(csv_text).strip().splitlines()
    assert lines[0].startswith("id,received,camera,plate")
    assert len(lines) == 2
    assert "AB12CDE" in lines[1]

    browser.find_element(By.CSS_SELECTOR, "[data-tab=lists]").click()
    add = wait_until(lambda: find(browser, "#lists-body fieldset.list > button"))
    add.click()
    new_plate = browser.find_elements(By.CSS_SELECTOR, "#lists-body .plate-input")[-1]
    new_plate.send_keys("NEW 123")
    browser.find_elements(By.CSS_SELECTOR, "#lists-body .name-input")[-1].send_keys("Bob <b>")
    browser.find_element(By.ID, "save-lists").click()
    wait_until(lambda: backend.reloads == 1)
    match = backend.lists.match("NEW123")
    assert match is not None
    assert match.entry.name == "Bob <b>"


def test_a_refused_save_shows_the_reason(
    browser: WebDriver, site: tuple[WebService, FakeBackend, Path], tmp_path: Path
) -> None:
    """Two lists added with the page's default name and saved: the page shows the server's
    reason as an error, and the file and the bridge's lists stay as they were."""
    service, backend, _ = site
    before = (tmp_path / "lists.yaml").read_text()
    log_in(browser, base(service))
    browser.find_element(By.CSS_SELECTOR, "[data-tab=lists]").click()
    wait_until(lambda: find(browser, "#lists-body fieldset.list"))
    browser.find_element(By.ID, "add-list").click()
    browser.find_element(By.ID, "add-list").click()
    browser.find_element(By.ID, "save-lists").click()
    status = browser.find_element(By.ID, "status")
    wait_until(lambda: "two lists are named 'new'" in status.text)
    assert "error" in (status.get_attribute("class") or "")
    assert (tmp_path / "lists.yaml").read_text() == before
    assert backend.reloads == 0


def test_camera_text_is_shown_as_text(
    browser: WebDriver, site: tuple[WebService, FakeBackend, Path]
) -> None:
    """A plate with markup in it is shown literally, never run or parsed."""
    service, _, _ = site
    open_live(browser, base(service))
    service.read(record("gate", "<img src=x onerror=alert(1)>"))
    item = wait_until(lambda: find(browser, "#reads li.read"), timeout=15)
    assert item.find_element(By.CSS_SELECTOR, ".plate").text == "<img src=x onerror=alert(1)>"
    assert item.find_elements(By.CSS_SELECTOR, ".plate img") == []


def test_refused_without_the_password(
    browser: WebDriver, site: tuple[WebService, FakeBackend, Path]
) -> None:
    """A wrong password keeps the browser on the login form, and the API refuses it."""
    service, backend, _ = site
    log_in(browser, base(service), password="not the password")
    wait_until(lambda: "Wrong password." in texts(browser, "p.error"))
    assert find(browser, "#reads") is None
    browser.get(base(service) + "/api/cameras")
    assert "log in first" in "".join(texts(browser, "body"))
    assert backend.submitted == []


def test_read_only_without_a_password_and_phone_width(tmp_path: Path) -> None:
    """Without a password the page works on a phone's width with its buttons disabled."""
    backend = FakeBackend(views=[camera("gate")])
    service = WebService(backend=backend, host="127.0.0.1", port=0, password=None)
    service.start()
    driver = chromium(390, 844)
    try:
        driver.get(base(service) + "/")
        wait_until(lambda: find(driver, "#feed.open"), timeout=15)
        disabled = driver.execute_script(
            "return [...document.querySelectorAll('.camera button')].map(b => b.disabled)"
        )
        assert disabled == [True, True]  # read now, pulse output 1
        assert "read-only" in driver.find_element(By.ID, "mode").text
        assert driver.execute_script("return window.innerWidth") == 390
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert int(width) <= 390  # nothing wider than the phone: no sideways scrolling
    finally:
        quit_chromium(driver)
        service.stop()


def test_leaving_the_page_closes_its_live_feed(
    browser: WebDriver, site: tuple[WebService, FakeBackend, Path]
) -> None:
    """A page left for another (even one kept in the back/forward cache) closes its feed,
    so going back and forth never runs out of the browser's six connections per server."""
    service, _, _ = site
    log_in(browser, base(service))
    for _ in range(8):
        wait_until(lambda: find(browser, "#feed.open"), timeout=15)
        browser.get("about:blank")
        wait_until(lambda: service.live.clients == 0)
        browser.back()


def test_keyboard_reaches_the_tabs_and_buttons(
    browser: WebDriver, site: tuple[WebService, FakeBackend, Path]
) -> None:
    """Arrow keys move between the tabs, and every control has a label or text."""
    service, _, _ = site
    open_live(browser, base(service))
    live = browser.find_element(By.ID, "tab-live")
    live.click()
    live.send_keys(Keys.ARROW_RIGHT)
    wait_until(lambda: browser.find_element(By.ID, "history").is_displayed())
    active = browser.switch_to.active_element
    assert active.get_attribute("id") == "tab-history"
    unlabelled = browser.execute_script(
        "return [...document.querySelectorAll('input, select')]"
        ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))"
        ".map(e => e.name || e.id)"
    )
    assert unlabelled == []


def test_the_real_bridge_in_the_browser_right_pictures_and_read_now(
    browser: WebDriver,
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
) -> None:
    """The page on the real bridge and a simulated camera: a read is shown live before its
    pictures have come from the camera, and the page shows that read's pictures when they
    do, never the vehicle before's (the API answers 404 "not here yet" meanwhile); "Read
    now" on the page reaches the camera."""
    port = free_port()
    run_bridge(
        bridge_settings(
            broker,
            prefix,
            {"gate": camera_config(simulator)},
            web={"port": port, "password": PASSWORD},
        )
    )
    assert simulator.wait_for_streams(1)
    service_url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {PASSWORD}"}
    simulator.emit_read("FIRST1", picture_size=5_000)  # its pictures are the "latest" ones
    wait_until(lambda: requests.get(f"{service_url}/api/cameras/gate/pictures/plate", headers=auth))

    open_live(browser, service_url)

    read = make_read("SECOND2", picture_size=9_000)
    whole = encode_read(read, simulator.boundary)
    first = encode_part(simulator.boundary, read.xml, content_type=XML_TYPE)
    assert whole.startswith(first)
    simulator.send_raw(first)  # the read, and its pictures not yet
    item = wait_until(
        lambda: next(
            (
                li
                for li in browser.find_elements(By.CSS_SELECTOR, "#reads li.read")
                if "SECOND2" in li.text
            ),
            None,
        ),
        timeout=15,
    )
    (listed,) = wait_until(  # searchable once the history's writer has had its turn
        lambda: requests.get(
            f"{service_url}/api/reads", params={"plate": "SECOND2"}, headers=auth, timeout=10
        ).json()["reads"]
    )
    early = requests.get(service_url + listed["pictures"]["plate"], headers=auth, timeout=10)
    assert early.status_code == 404
    assert early.headers["retry-after"] == "1"

    simulator.send_raw(whole[len(first) :])  # now the pictures
    pictures = item.find_elements(By.CSS_SELECTOR, "img.picture")
    assert len(pictures) == 2
    wait_until(lambda: all(image_loaded(browser, img) for img in pictures), timeout=15)
    late = requests.get(service_url + listed["pictures"]["plate"], headers=auth, timeout=10)
    assert late.content == read.pictures["licensePlatePicture.jpg"]

    before = simulator.count("/ISAPI/Traffic/MNPR")
    browser.find_element(By.XPATH, "//button[text()='Read now']").click()
    wait_until(lambda: simulator.count("/ISAPI/Traffic/MNPR") > before)
