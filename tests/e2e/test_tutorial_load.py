"""Load on the tutorial's consumers with the tutorial's settings (a layer with no CONFIG).

The project is the test project with ``CHANNEL_LAYERS`` written as a Channels 1.x project
moving off Redis would write it: a backend and a routing, nothing tuned (default capacity,
expiry and segment size; the segment name derived from the settings module and directory).
The real master (2 interfaces x 2 workers) serves it. Nothing may be lost: no 503, no
close 1013 (try again later), every frame answered, in order where the page promises it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.exceptions import ConnectionClosed

from shmlayer import ShmChannelLayer
from tests.e2e.harness import RealMaster, http_get, remove_segment, wait_for
from tests.e2e.test_tutorial import check_ordering, close_all, group_size, manage, receive_all, ws
from tests.supervisor.harness import ROOT

pytestmark = pytest.mark.e2e

#: The settings a tutorial project has once it runs on more than one process.
SETTINGS = '''
from tests.djangoproject.settings import *  # noqa: F401,F403

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "asgi_ipc.IPCChannelLayer",
        "ROUTING": "tests.djangoproject.routing.channel_routing",
    },
}
'''

CLIENTS = 50
LINES = 3
FRAMES = 50


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tutorial-load")
    module = f"shmc_tutorial_settings_{secrets.token_hex(4)}"
    (tmp / f"{module}.py").write_text(SETTINGS)
    env = {
        "DJANGO_SETTINGS_MODULE": module,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp}",
        "SHMCHANNELS_TEST_DB": str(tmp / "db.sqlite3"),
    }
    # Every process of the project (run from ROOT) derives this name; computed the same way.
    code = "from shmlayer._segment import default_segment_name; print(default_segment_name())"
    segment = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30,
                             env={**os.environ, **env}).stdout.strip()
    assert segment.startswith("shmchannels-")
    server = RealMaster(["--interfaces", "2", "-w", "2", "--timeout", "20"], env=env)
    server.segment = segment  # stop() removes it
    try:
        manage(env, "migrate", "--noinput", "-v", "0")
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop()
        remove_segment(segment)


def open_client(site, path):
    # max_queue=None: the test reads clients one after another; the client must not push
    # back on the server meanwhile (that would test the client, not the server).
    return ws(site, path, open_timeout=10, max_queue=None)


def layer_counters(site):
    """The layer's drop counters (full channel, skipped group copy, full segment, expired)."""
    layer = ShmChannelLayer(name=site.segment, _create=False)
    try:
        stats = layer.stats()["global"]
    finally:
        layer.close()
    return {key: stats.get(key) for key in ("n_full", "n_group_skipped", "n_segment_full", "n_expired")}


def test_back_to_back_frames_under_enforce_ordering_all_answered_in_order(site):
    client = open_client(site, "/ordering/")
    try:
        check_ordering(client, "f", FRAMES, timeout=30)
        client.ping().wait(5)  # still open: no 1013, no error close
    finally:
        close_all(client)


def chat_room(site, room, count):
    """``count`` clients in ``/rooms/<room>/`` (the Persisting Data section), all members."""
    names = [f"user{index}" for index in range(count)]
    clients = []
    try:
        for name in names:
            clients.append(open_client(site, f"/rooms/{room}/?username={name}"))
        wait_for(lambda: group_size(site, f"chat-{room}") == count, 20,
                 lambda: f"{count} members of chat-{room}, have {group_size(site, f'chat-{room}')}")
    except BaseException:
        close_all(*clients)
        raise
    return names, clients


def line(name, index):
    return json.dumps({"text": f"{name} says {index}", "username": name})


def collect_all(clients, count, deadline, quiet=None):
    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        return list(pool.map(lambda client: receive_all(client, count, deadline, quiet), clients))


def assert_all_open(names, clients):
    closed = []
    for name, client in zip(names, clients):
        try:
            client.ping().wait(5)
        except (ConnectionClosed, TimeoutError) as exc:
            closed.append((name, repr(exc)))
    assert not closed, closed


def test_fifty_clients_chat_in_one_room_and_everyone_receives_everything(site):
    """Each round, all 50 clients say a line at once; everyone gets all 50 before the next.

    A round puts at most 50 copies on each socket's reply channel, within the default
    capacity (100): a copy missing here is lost, not skipped for a full channel.
    """
    http_statuses: list[int] = []

    def http_traffic():
        for index in range(40):
            try:
                http_statuses.append(http_get(site.port, f"/consumer/load{index}", timeout=20)[0])
            except OSError:
                http_statuses.append(0)

    before = layer_counters(site)
    names, clients = chat_room(site, "crowd", CLIENTS)
    traffic = threading.Thread(target=http_traffic)
    try:
        traffic.start()
        for index in range(LINES):
            for name, client in zip(names, clients):
                client.send(f"{name} says {index}")
            expected = {line(name, index) for name in names}
            received = collect_all(clients, CLIENTS, time.monotonic() + 20)
            missing = {names[i]: sorted(json.loads(f)["text"] for f in expected - set(frames))
                       for i, frames in enumerate(received) if sorted(frames) != sorted(expected)}
            assert not missing, (f"round {index}: clients missing frames: {missing}; "
                                 f"layer: {layer_counters(site)}; log:\n{site.log()[-4000:]}")
        traffic.join(timeout=60)
        assert http_statuses == [200] * 40, http_statuses
        assert_all_open(names, clients)
    finally:
        close_all(*clients)
        traffic.join(timeout=60)
    wait_for(lambda: group_size(site, "chat-crowd") == 0, 20, "every client discarded from chat-crowd")
    assert layer_counters(site) == before  # nothing full, skipped or expired
    log = site.log()
    assert "ChannelFull" not in log and "1013" not in log and "WARNING" not in log, log[-3000:]


def test_burst_beyond_capacity_every_copy_is_delivered_or_counted(site):
    """50 clients x 3 lines at once: 150 copies per socket against a capacity of 100.

    Whether the interfaces drain fast enough depends on the machine (on 2 shared cores they
    usually do, not always). What must always hold: no copy is delivered twice or altered,
    and every copy not delivered was counted as skipped for a full channel (never silent).
    """
    before = layer_counters(site)
    names, clients = chat_room(site, "burst", CLIENTS)
    try:
        for index in range(LINES):
            for name, client in zip(names, clients):
                client.send(f"{name} says {index}")
        expected = {line(name, index) for name in names for index in range(LINES)}

        def settled():
            return layer_counters(site)["n_group_skipped"] - before["n_group_skipped"]

        # A copy is queued or skipped the moment a worker handles the line: once no frame
        # came for 2 s, everything that will ever arrive has arrived.
        received = collect_all(clients, CLIENTS * LINES, time.monotonic() + 20, quiet=2.0)
        for name, frames in zip(names, received):
            assert len(frames) == len(set(frames)), f"{name} got a frame twice"
            assert set(frames) <= expected, f"{name} got an unexpected frame"
        lost = sum(len(expected) - len(frames) for frames in received)
        assert lost == settled(), f"{lost} copies missing but {settled()} counted as skipped"
        assert layer_counters(site)["n_segment_full"] == before["n_segment_full"]
        assert_all_open(names, clients)
    finally:
        close_all(*clients)
    wait_for(lambda: group_size(site, "chat-burst") == 0, 20, "every client discarded from chat-burst")
