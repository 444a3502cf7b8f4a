"""End to end: the example chat site served by the real master, over real sockets.

One master (1 interface, 2 workers, from ``example/shmchannels.conf.py``) runs for the
module on a free port, with its own sqlite file and shared-memory segment. Clients are
plain HTTP (urllib) and the ``websockets`` library; the announce command runs as a
separate process, as a cron job would.
"""
from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.e2e.browser_helpers import ExampleSite, SiteError, pid_alive

pytestmark = pytest.mark.e2e

FRAME_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleSite]:
    example = ExampleSite(tmp_path_factory.mktemp("example-site"))
    try:
        example.start()
        yield example
    finally:
        example.stop()


def fresh_room() -> str:
    return "e2e-" + secrets.token_hex(4)


def open_socket(site: ExampleSite, room: str, username: str, origin: str | None = None) -> ClientConnection:
    """Join ``room`` as ``username`` the way the page's script does."""
    return connect(
        f"{site.ws_base}/chat/{room}/?username={username}",
        origin=origin or site.origin, proxy=None, open_timeout=FRAME_TIMEOUT, close_timeout=2,
    )


def receive_json(ws: ClientConnection, accept: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Return the first JSON frame ``accept`` likes, skipping others; fail after FRAME_TIMEOUT."""
    deadline = time.monotonic() + FRAME_TIMEOUT
    seen = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no matching frame within {FRAME_TIMEOUT:.0f} s; got {seen!r}")
        try:
            frame = ws.recv(timeout=left)
        except TimeoutError:
            continue
        data = json.loads(frame)
        if accept(data):
            return data
        seen.append(data)


def is_message(username: str, text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda data: data.get("type") == "message" and data.get("username") == username and data.get("text") == text


def test_room_list_page(site: ExampleSite) -> None:
    status, body = site.get("/")
    assert status == 200, site.log_tail()
    assert 'id="join-form"' in body
    # The lobby comes from a data migration, so a fresh site lists it.
    assert 'data-room="lobby"' in body


def test_join_form_leads_to_the_room_page_and_its_script(site: ExampleSite) -> None:
    room = fresh_room()
    status, body = site.get(f"/?room={room}&username=ann")  # the form's GET, redirect followed
    assert status == 200
    assert f'data-room="{room}"' in body and 'data-username="ann"' in body
    assert "/static/chat/chat.js" in body
    # DEBUG: the default http.request consumer serves static files, like runserver.
    status, script = site.get("/static/chat/chat.js")
    assert status == 200 and "new WebSocket(" in script
    status, _ = site.get("/static/chat/chat.css")
    assert status == 200
    # The new room is now in the list.
    assert f'data-room="{room}"' in site.get("/")[1]


def test_bad_room_name_is_a_form_error_not_a_crash(site: ExampleSite) -> None:
    status, body = site.get("/?room=no%20spaces&username=ann")
    assert status == 200 and "Use letters, digits" in body
    assert site.get("/chat/no.dots/?username=ann")[0] == 404


def test_two_clients_chat_and_the_messages_are_saved(site: ExampleSite) -> None:
    room = fresh_room()
    with open_socket(site, room, "alice") as alice, open_socket(site, room, "bob") as bob:
        alice.send("hello from alice")
        for ws in (alice, bob):
            got = receive_json(ws, is_message("alice", "hello from alice"))
            assert got["room"] == room and isinstance(got["id"], int)
        bob.send("  hi alice  ")  # the server strips the line
        for ws in (alice, bob):
            receive_json(ws, is_message("bob", "hi alice"))
    assert site.saved_messages(room) == [("alice", "hello from alice"), ("bob", "hi alice")]
    # The page shows the history, and the script's gap-filling endpoint returns it.
    status, page = site.get(f"/chat/{room}/?username=carol")
    assert status == 200 and "hello from alice" in page and "hi alice" in page
    history = site.get_json(f"/chat/{room}/history/?after=0")["messages"]
    assert [(m["username"], m["text"]) for m in history] == [("alice", "hello from alice"), ("bob", "hi alice")]
    later = site.get_json(f"/chat/{room}/history/?after={history[0]['id']}")["messages"]
    assert [m["text"] for m in later] == ["hi alice"]


def test_a_burst_of_lines_all_arrive_and_are_saved(site: ExampleSite) -> None:
    room = fresh_room()
    sent = [f"line {i}" for i in range(30)]
    with open_socket(site, room, "alice") as alice, open_socket(site, room, "bob") as bob:
        for text in sent:
            alice.send(text)
        got: list[str] = []
        while len(got) < len(sent):
            got.append(receive_json(bob, lambda data: data.get("type") == "message")["text"])
    # Receives of one socket run in order (enforce_ordering); the two workers may then
    # save two consecutive lines in either order, so compare as sets.
    assert sorted(got) == sorted(sent)
    assert sorted(text for _, text in site.saved_messages(room)) == sorted(sent)


def test_blank_lines_are_dropped_and_long_lines_cut(site: ExampleSite) -> None:
    room = fresh_room()
    with open_socket(site, room, "ann") as ann:
        ann.send("   ")
        ann.send(b"binary frames are not chat lines")
        ann.send("x" * 5000)
        got = receive_json(ann, lambda data: data.get("type") == "message")
        assert got["text"] == "x" * 2000
    assert site.saved_messages(room) == [("ann", "x" * 2000)]


def test_asgi_module_exposes_the_layer_the_1x_way(site: ExampleSite) -> None:
    result = site.manage("shell", "-v", "0", "-c", "import chatsite.asgi as a; print(type(a.channel_layer).__name__, "
                         "a.channel_layer.segment_name)")
    assert result.stdout.split() == ["ShmChannelLayer", site.segment]


def test_rooms_are_separate(site: ExampleSite) -> None:
    room_a, room_b = fresh_room(), fresh_room()
    with open_socket(site, room_a, "ann") as ann, open_socket(site, room_b, "ben") as ben:
        ben.send("only in b")
        receive_json(ben, is_message("ben", "only in b"))
        ann.send("only in a")
        # ann's own line arrives, ben's never does (frames of one socket are in order).
        got = receive_json(ann, lambda data: data.get("type") == "message")
        assert (got["username"], got["text"]) == ("ann", "only in a")


def test_username_defaults_to_anonymous(site: ExampleSite) -> None:
    room = fresh_room()
    with connect(f"{site.ws_base}/chat/{room}/", origin=site.origin, proxy=None,
                 open_timeout=FRAME_TIMEOUT, close_timeout=2) as ws:
        ws.send("who am I")
        receive_json(ws, is_message("anonymous", "who am I"))


def test_announce_reaches_every_client(site: ExampleSite) -> None:
    room = fresh_room()
    with open_socket(site, room, "alice") as alice, open_socket(site, room, "bob") as bob:
        result = site.manage("announce", room, "Server restarts at noon")
        assert "Announced to room %s" % room in result.stdout
        assert "(2 open sockets)" in result.stdout
        for ws in (alice, bob):
            got = receive_json(ws, lambda data: data.get("type") == "announce")
            assert got["text"] == "Server restarts at noon" and got["room"] == room
    # Announcements are broadcast only, not saved as chat lines.
    assert site.saved_messages(room) == []


def test_announce_refuses_bad_input_without_a_traceback(site: ExampleSite) -> None:
    result = site.manage("announce", "bad room", "x", check=False)
    assert result.returncode != 0
    assert "invalid room name" in result.stderr and "Traceback" not in result.stderr
    result = site.manage("announce", "lobby", "   ", check=False)
    assert result.returncode != 0 and "empty" in result.stderr


@pytest.mark.parametrize("origin", ["http://evil.example.com", "http://127.0.0.1.evil.example.com:8000"])
def test_foreign_origin_is_rejected(site: ExampleSite, origin: str) -> None:
    with pytest.raises(InvalidStatus) as caught, open_socket(site, "lobby", "mallory", origin=origin):
        pass
    assert caught.value.response.status_code == 403


def test_missing_origin_is_rejected(site: ExampleSite) -> None:
    # allowed_hosts_only, as in Channels 1.x, refuses a connect without an Origin header.
    with pytest.raises(InvalidStatus) as caught, \
            connect(f"{site.ws_base}/chat/lobby/?username=x", proxy=None, open_timeout=FRAME_TIMEOUT):
        pass
    assert caught.value.response.status_code == 403


@pytest.mark.parametrize("path", ["/chat/not.a.room/", "/elsewhere/", "/chat/"])
def test_socket_on_unknown_path_is_rejected(site: ExampleSite, path: str) -> None:
    with pytest.raises(InvalidStatus) as caught, \
            connect(f"{site.ws_base}{path}", origin=site.origin, proxy=None, open_timeout=FRAME_TIMEOUT):
        pass
    assert caught.value.response.status_code == 403


def test_site_still_serves_after_the_rejections(site: ExampleSite) -> None:
    room = fresh_room()
    with open_socket(site, room, "zoe") as zoe:
        zoe.send("still here")
        receive_json(zoe, is_message("zoe", "still here"))
    if site.proc is None or site.proc.poll() is not None:
        raise SiteError("the master died during the tests\n" + site.log_tail())


def test_master_stops_cleanly_and_removes_its_segment(site: ExampleSite) -> None:
    # Runs last in this module: SIGTERM drains the master, which unlinks the segment itself.
    assert site.segment_exists()
    pids = site.children()
    assert len(pids) >= 3  # 1 interface + 2 workers, from shmchannels.conf.py
    assert site.proc is not None
    site.proc.terminate()
    try:
        site.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        raise AssertionError("the master did not stop within 20 s of SIGTERM\n" + site.log_tail()) from None
    assert site.proc.returncode == 0, site.log_tail()
    assert not site.segment_exists(), "the master left its segment behind\n" + site.log_tail()
    assert not [pid for pid in pids if pid_alive(pid)], "children outlived the master"
