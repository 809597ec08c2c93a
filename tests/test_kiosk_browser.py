"""The kiosk page (``/kiosk``) in a real headless Chromium, against the live service (uvicorn on a
free port, over the shared small retailer's bundle): a carried item in, outfits from this store's
stock on screen, the first outfit without scrolling, chosen items sent to the cart (the events
recorded); clear messages for an unknown item id and an unreachable service. A screenshot of the
portrait screen is saved as ``test-results/kiosk.png``.

Skipped when Chromium or chromedriver is missing, except with ``LOOKBOOK_REQUIRE_BROWSER=1``
(``.ci/run``), where that fails.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import uvicorn
from fastapi import FastAPI, Request

from app.errors import error_response
from app.main import create_app
from app.service import RecommendationService
from app.settings import Settings
from feature_store.schema import Channel, InteractionType
from tests.helpers import CHROMEDRIVER, CHROMIUM, browser_missing, free_port

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "test-results"
STORE = "store-001"
WIDTH, HEIGHT = 1080, 1920
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    f"--window-size={WIDTH},{HEIGHT}",
)
WAIT_S = 30.0
#: Keys the test service refuses, as the API-key check would: unknown (401), no kiosk scope (403).
REFUSED = {"Bearer rejected-key": (401, "unauthorized"), "Bearer no-scope-key": (403, "forbidden")}


@dataclass
class Live:
    url: str
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread
    authorization: list[str | None]  # the Authorization header of every /v1/ request

    @property
    def service(self) -> RecommendationService:
        service: RecommendationService = self.app.state.service
        return service

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    """The real service on a free loopback port, in a thread of this process."""
    app = create_app(settings)
    seen: list[str | None] = []

    @app.middleware("http")
    async def record_authorization(request: Request, call_next: Any) -> Any:
        if request.url.path.startswith("/v1/"):
            seen.append(request.headers.get("authorization"))
            refused = REFUSED.get(request.headers.get("authorization") or "")
            if refused is not None:  # what the API-key check answers (another engineer's part)
                return error_response(refused[0], refused[1], "refused by the test's key check")
        return await call_next(request)

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="kiosk-live-service", daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        assert thread.is_alive(), "the service did not start"
        assert time.monotonic() < deadline, "the service did not start within 30 s"
        time.sleep(0.05)
    running = Live(f"http://127.0.0.1:{port}", app, server, thread, seen)
    yield running
    running.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's) driven by Selenium, portrait 1080 × 1920, fresh profile."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not binary.exists():
            browser_missing(f"{binary} is not installed (`make ensure-chromium` installs it)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="lookbook-kiosk-chromium-")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_window_size(WIDTH, HEIGHT)
    # the screen itself is 1080 × 1920 (a window's size includes its frame)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def frames(retailer: tuple[Path, Path]) -> dict[str, pd.DataFrame]:
    data, _ = retailer
    return {
        "items": pd.read_parquet(data / "items.parquet"),
        "stock": pd.read_parquet(data / "stock.parquet"),
    }


def _top(frames: dict[str, pd.DataFrame]) -> str:
    items, stock = frames["items"], frames["stock"]
    here = set(stock[(stock["store_id"] == STORE) & (stock["quantity"] > 0)]["item_id"])
    tops = items[(items["category"] == "top") & items["item_id"].isin(here)]
    return str(tops["item_id"].iloc[0])


def _units(frames: dict[str, pd.DataFrame], item: str, size: str) -> int:
    stock = frames["stock"]
    rows = stock[
        (stock["item_id"] == item) & (stock["size"] == size) & (stock["store_id"] == STORE)
    ]
    return int(rows["quantity"].sum())


def _wait(driver: Any, condition: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(condition, message=f"timed out waiting for {what}")


def _message(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "message")
    return str(box.text) if box.is_displayed() else ""


def test_kiosk_page_outfits_in_store_and_send_to_cart(
    live: Live, browser: Any, frames: dict[str, pd.DataFrame]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    customer = "C-kiosk-browser-1"
    top = _top(frames)
    browser.get(f"{live.url}/kiosk?store={STORE}")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#occasions .chip"), "the page")
    assert STORE in browser.find_element(By.ID, "store-label").text.lower()
    assert browser.execute_script("return [innerWidth, innerHeight];") == [WIDTH, HEIGHT]
    loyalty = browser.find_element(By.ID, "customer-input")
    loyalty.send_keys(customer, Keys.TAB)
    browser.find_element(By.ID, "item-input").send_keys(top, Keys.ENTER)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".outfit .card"), "the outfits")
    outfits = browser.find_elements(By.CSS_SELECTOR, ".outfit")
    assert 1 <= len(outfits) <= 3
    cards = browser.find_elements(By.CSS_SELECTOR, ".outfit .card")
    for card in cards:  # what the page shows is on this store's shelves in the size it says
        assert card.get_attribute("data-availability") == "in_store"
        item, size = card.get_attribute("data-item"), card.get_attribute("data-size")
        assert size and _units(frames, item, size) > 0, (item, size)
        assert f"Take {size}" in card.text.replace("\n", " ")
    for card in browser.find_elements(By.CSS_SELECTOR, "#elsewhere .card"):
        assert card.get_attribute("data-availability") == "elsewhere"
        assert _units(frames, card.get_attribute("data-item"), card.get_attribute("data-size")) == 0
    # the carried item's size advice (GET /v1/items/{id}/size-advice) is on screen
    carried = browser.find_element(By.CSS_SELECTOR, f'#carried li[data-item="{top}"]')
    assert "Take" in carried.text
    # the first outfit fits on the portrait screen above the cart bar, without scrolling
    bottom = browser.execute_script(
        "return document.querySelector('.outfit').getBoundingClientRect().bottom;"
    )
    bar = browser.execute_script(
        "return document.querySelector('.cartbar').getBoundingClientRect().top;"
    )
    assert browser.execute_script("return window.scrollY;") == 0
    assert bottom <= bar, (bottom, bar)
    # choose two items and send them to the cart
    first_outfit = outfits[0].find_elements(By.CSS_SELECTOR, ".card")
    chosen = [
        (c.get_attribute("data-item"), c.get_attribute("data-size")) for c in first_outfit[:2]
    ]
    for card in first_outfit[:2]:
        card.click()
    assert first_outfit[0].get_attribute("aria-pressed") == "true"
    RESULTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(RESULTS / "kiosk.png"))
    browser.find_element(By.ID, "send-cart").click()
    _wait(
        browser,
        lambda d: "sent to your online cart" in d.find_element(By.ID, "cart-status").text,
        "the cart confirmation",
    )
    browser.save_screenshot(str(RESULTS / "kiosk-sent.png"))
    logged = [e for e in live.service.event_log.iter_events() if e.customer_id == customer]
    assert sorted((e.item_id, e.size) for e in logged) == sorted(chosen)
    for event in logged:
        assert event.type is InteractionType.ADD_TO_CART and event.channel is Channel.KIOSK
        assert event.store_id == STORE and event.recommendation_id is not None
    assert _message(browser) == ""
    assert set(live.authorization) == {None}  # no key given: no Authorization header


def test_kiosk_page_unknown_item_and_unreachable_service(
    live: Live, browser: Any, frames: dict[str, pd.DataFrame]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    # an API key given in the fragment: kept in sessionStorage, off the URL, sent as a Bearer token
    browser.get(f"{live.url}/kiosk?store={STORE}#key=kiosk-test-key")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#occasions .chip"), "the page")
    assert browser.execute_script("return location.hash;") == ""
    assert browser.execute_script("return location.search;") == f"?store={STORE}"
    stored = browser.execute_script("return sessionStorage.getItem('lookbook.kiosk.key');")
    assert stored == "kiosk-test-key"
    field = browser.find_element(By.ID, "item-input")
    field.send_keys("NOPE-404", Keys.ENTER)
    _wait(browser, lambda d: "NOPE-404" in _message(d), "the unknown-item message")
    assert "don't know the item number" in _message(browser)
    assert not browser.find_elements(By.CSS_SELECTOR, "#carried li")
    assert live.authorization and set(live.authorization) == {"Bearer kiosk-test-key"}
    RESULTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(RESULTS / "kiosk-unknown-item.png"))
    # keys the service refuses: a clear message, not a broken page
    for key, words in (("rejected-key", "not signed in"), ("no-scope-key", "not allowed")):
        browser.execute_script(f"sessionStorage.setItem('lookbook.kiosk.key', '{key}');")
        browser.get(f"{live.url}/kiosk?store={STORE}")
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#occasions .chip"), "the page")
        browser.find_element(By.ID, "item-input").send_keys(_top(frames), Keys.ENTER)
        _wait(browser, lambda d, w=words: w in _message(d), f"the {key} message")
    field = browser.find_element(By.ID, "item-input")
    live.stop()  # the service goes away under the page
    field.clear()
    field.send_keys(_top(frames), Keys.ENTER)
    _wait(browser, lambda d: "can't reach the service" in _message(d), "the unreachable message")
