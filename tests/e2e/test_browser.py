"""The example chat in a real browser: headless Chromium driven by selenium.

The site is served by the real master (see ``browser_helpers.ExampleSite``); the page's
own script does the WebSocket work. Two tabs of one browser join a room and see each
other's lines; a reload reconnects and shows the history; ``manage.py announce`` reaches
both tabs; when the interface process is killed, both pages reconnect on their own
(jittered backoff) once the master has replaced it.
"""
from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser_helpers import ExampleSite, browser_available, make_chromium, pid_alive, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not browser_available(), reason="needs Debian's chromium and chromium-driver"),
]

WAIT = 15  # seconds; every browser wait is bounded by this


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleSite]:
    example = ExampleSite(tmp_path_factory.mktemp("browser-site"))
    try:
        example.start()
        yield example
    finally:
        example.stop()


@pytest.fixture()
def driver(tmp_path: Path) -> Iterator[Any]:
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    browser = make_chromium(profile)
    try:
        yield browser
    finally:
        browser.quit()


class ChatTab:
    """One browser tab showing a room page; switches to itself before every action."""

    def __init__(self, driver: Any, handle: str) -> None:
        self.driver = driver
        self.handle = handle

    def focus(self) -> Any:
        self.driver.switch_to.window(self.handle)
        return self.driver

    def wait(self, condition: Any, what: str) -> Any:
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        driver = self.focus()
        try:
            return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(condition)
        except TimeoutException:
            raise AssertionError(f"{what} within {WAIT} s; page state: {self.describe()}") from None

    def describe(self) -> str:
        driver = self.focus()
        return driver.execute_script(
            "var s = document.getElementById('state');"
            "var items = Array.prototype.map.call(document.querySelectorAll('#messages li'),"
            " function (li) { return li.className + ': ' + li.textContent.replace(/\\s+/g, ' ').trim(); });"
            "return JSON.stringify({url: location.href, state: s && s.dataset.state,"
            " label: s && s.textContent, items: items});")

    def wait_connected(self) -> None:
        self.wait(lambda d: d.execute_script("return document.getElementById('state').dataset.state") == "open",
                  "the page did not connect")

    def say(self, text: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        self.wait_connected()
        box = self.focus().find_element(By.ID, "input")
        box.send_keys(text + Keys.ENTER)

    def lines(self) -> list[tuple[str, str, str]]:
        """(class, user, text) of every line on the page, in page order."""
        return [tuple(row) for row in self.focus().execute_script(
            "return Array.prototype.map.call(document.querySelectorAll('#messages li.msg, #messages li.announce'),"
            " function (li) { var u = li.querySelector('.user'), t = li.querySelector('.text');"
            " return [li.className, u ? u.textContent : '', t ? t.textContent : '']; });")]

    def wait_line(self, user: str, text: str) -> None:
        def shown(_driver: Any) -> bool:
            return any(u == user and t == text for cls, u, t in self.lines() if "msg" in cls)
        self.wait(shown, f"{user}: {text!r} did not appear")

    def wait_announcement(self, text: str) -> None:
        def shown(_driver: Any) -> bool:
            return any("announce" in cls and t == text for cls, _u, t in self.lines())
        self.wait(shown, f"the announcement {text!r} did not appear")


def open_room(driver: Any, site: ExampleSite, room: str, username: str, new_tab: bool) -> ChatTab:
    """Open the room list, fill in the join form, land on the room page (connected)."""
    from selenium.webdriver.common.by import By

    if new_tab:
        driver.switch_to.new_window("tab")
    driver.get(site.base_url + "/")
    tab = ChatTab(driver, driver.current_window_handle)
    room_box = driver.find_element(By.ID, "id_room")
    room_box.clear()
    room_box.send_keys(room)
    driver.find_element(By.ID, "id_username").send_keys(username)
    driver.find_element(By.CSS_SELECTOR, "#join-form button[type=submit]").click()
    tab.wait(lambda d: d.execute_script("return !!document.getElementById('chat')"), "the room page did not load")
    tab.wait_connected()
    return tab


def test_two_tabs_chat_reload_and_announce(site: ExampleSite, driver: Any) -> None:
    room = "browser-" + secrets.token_hex(3)
    alice = open_room(driver, site, room, "alice", new_tab=False)
    bob = open_room(driver, site, room, "bob", new_tab=True)
    assert "#" + room in driver.title

    alice.say("hi bob")
    bob.wait_line("alice", "hi bob")
    alice.wait_line("alice", "hi bob")
    bob.say("hi alice")
    alice.wait_line("bob", "hi alice")
    # Own lines are marked as such.
    assert ("msg mine", "alice", "hi bob") in alice.lines()

    # A reload shows the saved history (rendered by the view) and connects again.
    alice.focus().refresh()
    alice.wait_connected()
    texts = [(user, text) for cls, user, text in alice.lines() if "msg" in cls]
    assert texts == [("alice", "hi bob"), ("bob", "hi alice")]
    bob.say("after your reload")
    alice.wait_line("bob", "after your reload")

    # An announcement from a management command, outside any consumer, reaches both tabs.
    result = site.manage("announce", room, "Maintenance at noon")
    assert "Announced" in result.stdout
    alice.wait_announcement("Maintenance at noon")
    bob.wait_announcement("Maintenance at noon")
    assert site.saved_messages(room) == [("alice", "hi bob"), ("bob", "hi alice"), ("bob", "after your reload")]


def test_pages_reconnect_when_the_interface_process_dies(site: ExampleSite, driver: Any) -> None:
    room = "browser-" + secrets.token_hex(3)
    alice = open_room(driver, site, room, "alice", new_tab=False)
    bob = open_room(driver, site, room, "bob", new_tab=True)

    interface_pid = site.child_of_kind("interface")
    os.kill(interface_pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(interface_pid), 10.0, "the killed interface process to go")
    # Both sockets drop; each page reconnects by itself (backoff) once the master has
    # started a new interface process: #state counts the successful opens.
    for tab in (alice, bob):
        tab.wait(lambda d: d.execute_script("return Number(document.getElementById('state').dataset.opens)") >= 2,
                 "the page did not reconnect after its socket dropped")
    assert site.child_of_kind("interface") != interface_pid

    alice.say("back again")
    bob.wait_line("alice", "back again")
    bob.say("me too")
    alice.wait_line("bob", "me too")
