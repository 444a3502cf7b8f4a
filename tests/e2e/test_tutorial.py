"""The Channels 1.x "Getting Started" consumers, run unchanged by the real processes.

One master (2 interfaces x 2 workers, shm layer) serves ``tests/djangoproject/tutorial.py``
(every section of the page on its own path). Clients are the ``websockets`` sync client
and raw HTTP; users log in through Django's own session machinery (``manage.py shell``),
and the session cookie rides on the WebSocket handshake as a browser would send it.
The last tests run the same smoke path through ``runserver --noworker`` + ``runworker -v 2``.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from shmlayer import ShmChannelLayer
from tests.e2e.harness import ManageCommand, RealMaster, http_get, project_env, remove_segment, wait_for
from tests.supervisor.harness import ROOT, free_port

pytestmark = pytest.mark.e2e

#: Users of the Authentication section: two share the initial "a", one does not.
USERS = ("alice", "anna", "bob")

#: Logs USERS in with Django's test client (a real session saved in the database) and
#: prints {username: session key}.
LOGIN_SCRIPT = """
import json
from django.contrib.auth.models import User
from django.test import Client
keys = {}
for name in %r:
    user = User.objects.create_user(name, password="pw-" + name)
    client = Client()
    client.force_login(user)
    keys[name] = client.cookies["sessionid"].value
print("KEYS=" + json.dumps(keys))
"""


def manage(env: dict[str, str], *args: str, timeout: float = 60) -> str:
    """Run ``python -m django <args>`` for the test project; returns its stdout."""
    full_env = {**os.environ, "PYTHONPATH": ROOT, **env}
    full_env.pop("SHMCHANNELS_CMD_ARGS", None)
    result = subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, env=full_env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def shell(env: dict[str, str], code: str) -> str:
    """``manage.py shell -c code``."""
    return manage(env, "shell", "-c", code)


def login_users(env: dict[str, str]) -> dict[str, str]:
    out = shell(env, LOGIN_SCRIPT % (USERS,))
    return json.loads(out.split("KEYS=", 1)[1].strip())


@pytest.fixture(scope="module")
def site():
    """The real master on a migrated database, with USERS logged in (``site.sessions``)."""
    server = RealMaster(["--interfaces", "2", "-w", "2", "--timeout", "10"])
    env = project_env(server.segment, server.database)
    try:
        manage(env, "migrate", "--noinput", "-v", "0")
        server.sessions = login_users(env)
        server.project_env = env
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop()


# -- helpers ------------------------------------------------------------------------------

def ws(site, path, user=None, origin=None, open_timeout=5.0, **kwargs):
    """An open client (context manager entered), with ``user``'s session cookie if given."""
    headers = {}
    if user is not None:
        headers["Cookie"] = f"sessionid={site.sessions[user]}"
    return connect(site.url(path), open_timeout=open_timeout, close_timeout=1, additional_headers=headers,
                   origin=origin, **kwargs).__enter__()


def close_all(*clients):
    for client in clients:
        try:
            client.close()
        except Exception:
            pass


def recv(client, timeout=5.0):
    return client.recv(timeout=timeout)


def echoes(client, *texts):
    """Send each text and check that the reply is the same text, one round trip at a time."""
    for text in texts:
        client.send(text)
        assert recv(client) == text


def receive_all(client, count, deadline, quiet=None):
    """Frames of ``client`` until ``count`` arrived, the (monotonic) ``deadline`` passed, or
    (if ``quiet`` is given) nothing arrived for ``quiet`` seconds."""
    frames = []
    while len(frames) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            frames.append(client.recv(timeout=min(remaining, quiet or remaining)))
        except TimeoutError:
            break
    return frames


def check_ordering(client, prefix, count, timeout=10.0):
    """Enforcing Ordering: ``count`` frames sent back to back are all answered, numbered in order.

    The page's consumer answers frame n (0-based) ``"<n + 1>: <frame>"``; the replies must
    all come within ``timeout`` seconds.
    """
    for index in range(count):
        client.send(f"{prefix}{index}")
    got = receive_all(client, count, time.monotonic() + timeout)
    assert got == [f"{index + 1}: {prefix}{index}" for index in range(count)]


def silent(client, wait=0.5):
    """True if nothing arrives on ``client`` within ``wait`` seconds."""
    try:
        frame = client.recv(timeout=wait)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected frame {frame!r}")


def group_size(site, group):
    layer = ShmChannelLayer(name=site.segment, _create=False)
    try:
        return len(layer.group_channels(group))
    finally:
        layer.close()


def rows(database, room):
    with sqlite3.connect(database, timeout=10) as db:
        return [r[0] for r in db.execute(
            "SELECT message FROM chatapp_chatmessage WHERE room = ? ORDER BY id", (room,))]


def request(port, method, path, body=None, timeout=5.0):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# -- First Consumers ----------------------------------------------------------------------

def test_http_consumer_answers_through_encode_response(site):
    status, body = http_get(site.port, "/consumer/some/where?x=1")
    assert (status, body) == (200, b"Hello world! You asked for /consumer/some/where")
    # Paths the consumer is not routed on still reach the Django views.
    assert http_get(site.port, "/hello/") == (200, b"Hello world! You asked for /hello/")
    assert http_get(site.port, "/nowhere/")[0] == 404


STATIC_TEXT = b"static file served by the workers in DEBUG (tests/e2e/test_tutorial.py)\n"


def test_debug_static_files_served_by_the_workers(site):
    # "If Django is in debug mode (DEBUG=True), then runworker will serve static files".
    assert http_get(site.port, "/static/chatapp/tutorial.txt") == (200, STATIC_TEXT)
    assert http_get(site.port, "/static/chatapp/missing.txt")[0] == 404


def test_echo_ws_message(site):
    client = ws(site, "/echo/")
    try:
        echoes(client, "hello world", "é ü ✓", "x" * 5000)
    finally:
        close_all(client)


# -- Groups ---------------------------------------------------------------------------------

def test_group_chat_add_send_discard(site):
    clients = [ws(site, "/groups/") for _ in range(3)]
    try:
        wait_for(lambda: group_size(site, "chat") == 3, 5, "3 members in group chat")
        clients[0].send("hello everyone")
        for client in clients:
            assert recv(client) == "[user] hello everyone"
        clients[2].close()
        wait_for(lambda: group_size(site, "chat") == 2, 5, "the closed client discarded")
        clients[1].send("two left")
        for client in clients[:2]:
            assert recv(client) == "[user] two left"
    finally:
        close_all(*clients)
    wait_for(lambda: group_size(site, "chat") == 0, 5, "every client discarded")


def test_dropped_client_is_discarded_from_the_group(site):
    # No close frame: the socket just goes away (code 1006 in websocket.disconnect).
    stays, drops = ws(site, "/groups/"), ws(site, "/groups/")
    try:
        wait_for(lambda: group_size(site, "chat") == 2, 5, "2 members in group chat")
        drops.socket.shutdown(socket.SHUT_RDWR)
        drops.socket.close()
        wait_for(lambda: group_size(site, "chat") == 1, 5, "the dropped client discarded")
        stays.send("still here")
        assert recv(stays) == "[user] still here"
    finally:
        close_all(stays, drops)
    wait_for(lambda: group_size(site, "chat") == 0, 5, "every client discarded")


# -- Persisting Data ------------------------------------------------------------------------

def test_channel_session_keeps_username_from_query_and_room_from_path(site):
    ann = ws(site, "/rooms/lobby/?username=ann")
    # ASCII names: the page's parse_qs of a bytes query string cannot decode UTF-8.
    bob = ws(site, "/rooms/lobby/?username=bob&x=1")
    cat = ws(site, "/rooms/attic/?username=cat")
    try:
        wait_for(lambda: group_size(site, "chat-lobby") == 2 and group_size(site, "chat-attic") == 1, 5,
                 "room memberships")
        ann.send("hi lobby")
        for client in (ann, bob):
            assert json.loads(recv(client)) == {"text": "hi lobby", "username": "ann"}
        bob.send("hi ann")
        for client in (ann, bob):
            assert json.loads(recv(client)) == {"text": "hi ann", "username": "bob"}
        cat.send("alone")
        assert json.loads(recv(cat)) == {"text": "alone", "username": "cat"}
        assert silent(ann, 0.3) and silent(bob, 0.1)
    finally:
        close_all(ann, bob, cat)
    wait_for(lambda: group_size(site, "chat-lobby") == 0, 5, "lobby emptied by persist_ws_disconnect")


def test_channel_session_without_username_is_closed(site):
    client = ws(site, "/rooms/lobby/")  # accepted first, as the page does, then {"close": True}
    try:
        with pytest.raises(ConnectionClosed) as info:
            recv(client)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1000
    finally:
        close_all(client)


# -- Authentication -------------------------------------------------------------------------

def test_session_user_from_http_groups_by_username_initial(site):
    alice = ws(site, "/auth/", "alice")
    anna = ws(site, "/auth/", "anna")
    bob = ws(site, "/auth/", "bob")
    try:
        wait_for(lambda: group_size(site, "chat-a") == 2 and group_size(site, "chat-b") == 1, 5,
                 "groups by initial")
        alice.send("for the a's")
        assert recv(alice) == "for the a's" and recv(anna) == "for the a's"
        bob.send("bob alone")
        assert recv(bob) == "bob alone"
        assert silent(alice, 0.3) and silent(anna, 0.1)
        anna.close()
        wait_for(lambda: group_size(site, "chat-a") == 1, 5, "anna discarded by her session's user")
    finally:
        close_all(alice, anna, bob)


def test_session_key_in_the_query_string_instead_of_the_cookie(site):
    # "provide the Django session ID as part of the URL" (WebSockets on another domain).
    anna = ws(site, f"/auth/?session_key={site.sessions['anna']}")
    alice = ws(site, "/auth/", "alice")
    try:
        wait_for(lambda: group_size(site, "chat-a") == 2, 5, "anna grouped by her session key")
        anna.send("via session_key")
        assert recv(alice) == "via session_key" and recv(anna) == "via session_key"
    finally:
        close_all(anna, alice)
    wait_for(lambda: group_size(site, "chat-a") == 0, 5, "both discarded")


# -- Security -------------------------------------------------------------------------------

def test_allowed_hosts_only_rejects_foreign_origin(site):
    for origin in ("http://evil.example", None):
        with pytest.raises(InvalidStatus) as info:
            ws(site, "/secure/", "alice", origin=origin)
        assert info.value.response.status_code == 403
    client = ws(site, "/secure/", "alice", origin=f"http://127.0.0.1:{site.port}")
    try:
        echoes(client, "allowed")
    finally:
        close_all(client)


# -- Routing --------------------------------------------------------------------------------

def test_include_with_path_passes_named_groups_as_kwargs(site):
    first = ws(site, "/chat/kitchen/")
    second = ws(site, "/chat/kitchen/", "bob")
    try:
        wait_for(lambda: group_size(site, "chat-kitchen") == 2, 5, "two in chat-kitchen")
        # Nothing routes websocket.receive under /chat: the default consumer ignores it.
        first.send("ignored")
        assert silent(first, 0.3)
        second.close()
        wait_for(lambda: group_size(site, "chat-kitchen") == 1, 5, "chat_disconnect discarded one")
    finally:
        close_all(first, second)
    wait_for(lambda: group_size(site, "chat-kitchen") == 0, 5, "chat_disconnect discarded both")


def test_route_on_method_and_path(site):
    assert request(site.port, "POST", "/poll/", b"x=1") == (200, b"polled POST")
    # Other methods fall through to the views (no URL there).
    assert request(site.port, "GET", "/poll/")[0] == 404


# -- Models ---------------------------------------------------------------------------------

def test_messages_go_through_chat_messages_and_are_saved(site):
    clients = [ws(site, "/garden/") for _ in range(2)]
    try:
        wait_for(lambda: group_size(site, "chat-garden") == 2, 5, "two in chat-garden")
        clients[0].send("first line")
        clients[1].send("second line")
        for client in clients:
            got = {recv(client), recv(client)}
            assert got == {"first line", "second line"}
        assert sorted(rows(site.database, "garden")) == ["first line", "second line"]
    finally:
        close_all(*clients)


def test_channel_send_from_outside_a_consumer_reaches_msg_consumer(site):
    client = ws(site, "/porch/")
    try:
        wait_for(lambda: group_size(site, "chat-porch") == 1, 5, "member of chat-porch")
        shell(site.project_env,
              "from channels import Channel, Group; "
              "Channel('chat-messages').send({'room': 'porch', 'message': 'from cron'}); "
              "Group('chat-porch').send({'text': 'straight to the group'})")
        assert {recv(client), recv(client)} == {"from cron", "straight to the group"}
        assert rows(site.database, "porch") == ["from cron"]
    finally:
        close_all(client)


# -- Enforcing Ordering ---------------------------------------------------------------------

def test_enforce_ordering_counts_frames_in_order(site):
    client = ws(site, "/ordering/", "alice")
    try:
        check_ordering(client, "m", 20, timeout=30)
    finally:
        close_all(client)


def test_no_consumer_failed_on_the_way(site):
    # Runs last on this master: every socket above connected, chatted and disconnected
    # without a consumer error (e.g. a disconnect routed to the wrong section).
    # One exception, the page's own: a handshake that allowed_hosts_only rejected still
    # produces websocket.disconnect (as daphne did, asgi1.md §8), and the Security section's
    # disconnect consumer reads username[0] of the anonymous user -> IndexError, twice.
    time.sleep(0.5)  # the last disconnects
    errors = [line for line in site.log().splitlines() if "Error processing a message" in line]
    rejected = "on websocket.disconnect with consumer tests.djangoproject.tutorial.auth_ws_disconnect"
    assert len(errors) == 2 and all(rejected in line for line in errors), site.log()[-4000:]


# -- Running with Channels: runserver --noworker + runworker -v 2 -------------------------

class DjangoAdmin(ManageCommand):
    """``python -m django <command> <args>``: what ``manage.py <command>`` runs, with the
    command Django itself picks (staticfiles' runserver comes first in INSTALLED_APPS)."""

    @staticmethod
    def argv(command, args):
        return [sys.executable, "-m", "django", command, *args]


class _Site:
    """What the helpers above need of a site: port, url(), sessions, segment, database."""

    def __init__(self, port, env, sessions):
        self.port = port
        self.segment = env["SHMCHANNELS_TEST_SEGMENT"]
        self.database = env["SHMCHANNELS_TEST_DB"]
        self.sessions = sessions

    def url(self, path):
        return f"ws://127.0.0.1:{self.port}{path}"


def wait_serving(site, path, *commands):
    """Wait (30 s at most) until ``site`` answers 200 on ``path``; the commands' logs if not."""

    def serves():
        try:
            return http_get(site.port, path, timeout=2)[0] == 200
        except OSError:
            return False

    wait_for(serves, 30, lambda: f"{path} answered 200 (logs:\n" +
             "\n".join(command.log()[-2000:] for command in commands) + ")")


def smoke(site):
    """Echo, Models (row saved) and Enforcing Ordering with a logged-in user, on ``site``."""
    echo = ws(site, "/echo/")
    room = ws(site, "/smoke/")
    ordered = ws(site, "/ordering/", "anna")
    try:
        echoes(echo, "round trip")
        echoes(room, "saved")
        assert rows(site.database, "smoke") == ["saved"]
        check_ordering(ordered, "o", 5)
    finally:
        close_all(echo, room, ordered)


def test_runserver_noworker_with_runworker_verbose(tmp_path):
    segment = f"shmc-tut-{os.getpid()}-{secrets.token_hex(3)}"
    env = project_env(segment, str(tmp_path / "db.sqlite3"))
    started = []
    try:
        manage(env, "migrate", "--noinput", "-v", "0")
        site = _Site(free_port(), env, login_users(env))
        server = DjangoAdmin("runserver", [f"127.0.0.1:{site.port}", "--noworker", "--noreload"], env)
        started.append(server)
        worker = DjangoAdmin("runworker", ["-v", "2"], env)
        started.append(worker)
        wait_serving(site, "/consumer/smoke", server, worker)
        assert "interface only" in server.log()
        assert http_get(site.port, "/consumer/smoke") == (200, b"Hello world! You asked for /consumer/smoke")
        smoke(site)
        assert http_get(site.port, "/static/chatapp/tutorial.txt") == (200, STATIC_TEXT)
        # -v 2: one line per message: channel -> consumer duration.
        expected = [
            ("http.request", "tests.djangoproject.tutorial.http_consumer"),
            ("websocket.receive", "tests.djangoproject.tutorial.echo_ws_message"),
            ("websocket.connect", "tests.djangoproject.tutorial.models_ws_connect"),
            ("websocket.receive", "tests.djangoproject.tutorial.models_ws_message"),
            ("chat-messages", "tests.djangoproject.tutorial.msg_consumer"),
            ("websocket.receive", "tests.djangoproject.tutorial.ordering_ws_message"),
        ]
        def logged():
            log = worker.log()
            return all(re.search(rf"{re.escape(channel)} -> {re.escape(consumer)} \d+\.\dms", log)
                       for channel, consumer in expected)

        wait_for(logged, 5, lambda: f"-v 2 lines for {expected} in:\n{worker.log()[-3000:]}")
        assert worker.stop() == 0
        assert server.stop() == 0
    finally:
        for command in reversed(started):
            command.stop()
        remove_segment(segment)


def test_runserver_with_the_pages_in_memory_layer(tmp_path):
    """The page's first settings (``asgiref.inmemory.ChannelLayer``): plain ``runserver``."""
    env = {"DJANGO_SETTINGS_MODULE": "tests.djangoproject.settings",
           "SHMCHANNELS_TEST_DB": str(tmp_path / "db.sqlite3")}
    manage(env, "migrate", "--noinput", "-v", "0")
    site = _Site(free_port(), {**env, "SHMCHANNELS_TEST_SEGMENT": "unused"}, login_users(env))
    server = DjangoAdmin("runserver", [f"127.0.0.1:{site.port}", "--noreload"], env)
    try:
        wait_serving(site, "/consumer/mem", server)
        assert "InMemoryChannelLayer); in-process" in server.log()
        assert http_get(site.port, "/consumer/mem") == (200, b"Hello world! You asked for /consumer/mem")
        assert http_get(site.port, "/hello/") == (200, b"Hello world! You asked for /hello/")
        smoke(site)
        alice = ws(site, "/auth/", "alice")
        anna = ws(site, "/auth/", "anna")
        try:
            # The connect consumers accept before they add to the group (as on the page), and
            # this layer cannot be asked who is in a group: say it until anna hears it.
            for attempt in range(20):
                alice.send(f"cookies transfer your auth over {attempt}")
                try:
                    assert recv(anna, 0.25).startswith("cookies transfer your auth over")
                    break
                except TimeoutError:
                    continue
            else:
                raise AssertionError("anna never heard alice")
        finally:
            close_all(alice, anna)
        assert server.stop() == 0
    finally:
        server.stop()
