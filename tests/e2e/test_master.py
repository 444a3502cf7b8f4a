"""The real master (2 interfaces x 2 workers) serving the tutorial over the shm layer.

One master runs for the chat, crash, reload and scaling tests (in file order); the stop
test runs its own. Clients are the ``websockets`` sync client and raw HTTP.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from shmlayer import ShmChannelLayer
from tests.e2e.harness import RealMaster, http_get, peer_ports, socket_inodes, wait_for
from tests.supervisor.harness import alive

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def master():
    server = RealMaster(["--interfaces", "2", "-w", "2", "--timeout", "10"]).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def open_clients(master, count, path="/groups/"):
    # Entered as context managers (websockets >= 14 warns otherwise); close_all() closes them.
    return [connect(master.url(path), open_timeout=5, close_timeout=1).__enter__() for _ in range(count)]


def close_all(clients):
    for client in clients:
        try:
            client.close()
        except Exception:
            pass


def receive_text(client, expected, timeout=5.0):
    """Read until ``expected`` arrives (other chat lines may come first)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{expected!r} did not arrive")
        if client.recv(timeout=remaining) == expected:
            return


def chat_reaches_everyone(clients, text):
    clients[0].send(text)
    for client in clients:
        receive_text(client, f"[user] {text}")


def test_chat_reaches_clients_on_both_interfaces(master):
    interfaces = master.children("interface")
    assert len(interfaces) == 2
    before = {pid: socket_inodes(pid) for pid in interfaces}

    def both_used():
        return all(socket_inodes(pid) - before[pid] for pid in interfaces)

    # The accept is shared: open clients (at least 10, at most 40) until both interfaces
    # hold some of them.
    clients = open_clients(master, 10)
    try:
        while not both_used() and len(clients) < 40:
            clients += open_clients(master, 1)
        assert both_used(), {pid: len(socket_inodes(pid) - before[pid]) for pid in interfaces}
        chat_reaches_everyone(clients, "hello everyone")
        status, body = http_get(master.port, "/hello/")
        assert status == 200 and b"Hello world" in body
    finally:
        close_all(clients)


def test_hup_keeps_websockets_open_and_replaces_workers(master):
    interfaces = master.children("interface")
    workers = master.children("worker")
    clients = open_clients(master, 4)
    try:
        chat_reaches_everyone(clients, "before deploy")
        master.signal(signal.SIGHUP)
        master.wait_children("worker", 2, timeout=30, exclude=workers)
        assert master.children("interface") == interfaces
        chat_reaches_everyone(clients, "after deploy")
        assert http_get(master.port)[0] == 200
    finally:
        close_all(clients)


def test_ttin_ttou_scale_real_workers(master):
    master.signal(signal.SIGTTIN)
    master.wait_children("worker", 3, timeout=30)
    master.signal(signal.SIGTTOU)
    master.wait_children("worker", 2, timeout=15)
    assert http_get(master.port)[0] == 200


def test_worker_killed_mid_traffic_is_replaced(master):
    workers = master.children("worker")
    clients = open_clients(master, 3)
    results: list[int] = []
    stop = threading.Event()

    def traffic():
        while not stop.is_set() and len(results) < 400:
            try:
                results.append(http_get(master.port, timeout=8)[0])
            except OSError:
                results.append(0)

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        wait_for(lambda: len(results) >= 5, 10, "traffic")
        os.kill(workers[0], signal.SIGKILL)
        master.wait_children("worker", 2, timeout=30, exclude=[workers[0]])
        count = len(results)
        wait_for(lambda: len(results) >= count + 5, 20, "traffic after the replacement")
    finally:
        stop.set()
        thread.join(timeout=20)
    assert results[-1] == 200
    # At most the request the dead worker held is lost (503 after http_timeout).
    assert results.count(200) >= len(results) - 2, results
    try:
        chat_reaches_everyone(clients, "after worker crash")
    finally:
        close_all(clients)


def test_interface_killed_is_replaced_and_its_memberships_dropped(master):
    interfaces = master.children("interface")
    victim = interfaces[0]
    clients = open_clients(master, 6)

    def on_victim():
        ports = peer_ports(victim)
        return [c for c in clients if c.socket.getsockname()[1] in ports]

    try:
        while (not on_victim() or len(on_victim()) == len(clients)) and len(clients) < 40:
            clients += open_clients(master, 1)
        doomed = on_victim()
        assert doomed and len(doomed) < len(clients)
        os.kill(victim, signal.SIGKILL)
        master.wait_children("interface", 2, timeout=30, exclude=[victim])
        master.wait_log("Discarded the channels and group memberships of interface.", timeout=10)
        line = [l for l in master.log().splitlines() if "Discarded" in l and "interface." in l][-1]
        prefix = line.rsplit(" ", 1)[1]
        layer = ShmChannelLayer(name=master.segment, _create=False)
        try:
            assert not [name for name in layer.group_channels("chat") if name.startswith(prefix)]
        finally:
            layer.close()
        survivors = []
        for client in clients:
            try:
                client.ping().wait(2)
                survivors.append(client)
            except (ConnectionClosed, TimeoutError, OSError):
                pass
        # Exactly the victim's clients dropped; every other connection is unaffected.
        assert sorted(map(id, survivors)) == sorted(id(c) for c in clients if c not in doomed)
        chat_reaches_everyone(survivors, "after interface crash")
        newcomer = open_clients(master, 1)
        chat_reaches_everyone(newcomer + survivors, "newcomer")
        close_all(newcomer)
    finally:
        close_all(clients)


def test_term_drains_websockets_with_1001_and_removes_the_segment():
    server = RealMaster(["--interfaces", "1", "-w", "1"]).start()
    try:
        server.wait_ready()
        assert server.segment_exists()
        children = server.children()
        clients = open_clients(server, 3, "/echo/")
        clients[0].send("ping")
        assert clients[0].recv(timeout=5) == "ping"
        server.signal(signal.SIGTERM)
        codes = []
        for client in clients:
            with pytest.raises(ConnectionClosed) as info:
                client.recv(timeout=10)
            codes.append(info.value.rcvd.code if info.value.rcvd else None)
        assert codes == [1001, 1001, 1001]
        assert server.wait_exit(timeout=20) == 0
        assert not server.segment_exists()
        assert not any(alive(pid) for pid in children)
    finally:
        server.stop()


def test_project_that_cannot_boot_exits_nonzero_with_its_error():
    server = RealMaster(["-w", "1"], env={"SHMCHANNELS_TEST_ROUTING": "tests.no_such_module_xyz.channel_routing"})
    server.start()
    try:
        assert server.wait_exit(timeout=30) == 1
        log = server.log()
        assert "no_such_module_xyz" in log  # the worker's own error, on the master's stderr
        assert "worker 1 failed to boot (exit code 1); see its error above. Exiting." in log
        assert "Ready:" not in log
        assert not server.segment_exists()
    finally:
        server.stop()


def test_check_config_on_the_real_project():
    import subprocess
    import sys

    from tests.e2e.harness import project_env
    from tests.supervisor.harness import ROOT

    env = {**os.environ, **project_env("shmc-e2e-check"), "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-m", "supervisor", "--check-config"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "shmlayer.ShmChannelLayer" in result.stdout
    assert not os.path.exists("/dev/shm/shmc-e2e-check")  # checking creates nothing


DEPLOYED = '''
from channels.routing import route


def echo(message):
    message.reply_channel.send({"text": "VERSION:" + message.content["text"]})


channel_routing = [route("websocket.receive", echo)]
'''


def test_hup_deploys_new_code_while_websockets_stay_open(tmp_path):
    from tests.supervisor.harness import ROOT

    module = tmp_path / "deployed_consumers.py"
    module.write_text(DEPLOYED.replace("VERSION", "v1"))
    server = RealMaster(["-w", "1"], env={
        "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}",
        "PYTHONDONTWRITEBYTECODE": "1",  # the rewrite below may keep size and mtime second
        "SHMCHANNELS_TEST_ROUTING": "deployed_consumers.channel_routing",
    }).start()
    try:
        server.wait_ready()
        [worker] = server.children("worker")
        with connect(server.url("/any/"), open_timeout=5) as ws:
            ws.send("a")
            assert ws.recv(timeout=5) == "v1:a"
            module.write_text(DEPLOYED.replace("VERSION", "v2"))  # the deploy
            server.signal(signal.SIGHUP)
            server.wait_children("worker", 1, timeout=30, exclude=[worker])
            server.wait_log("Reload of worker done")
            wait_for(lambda: not alive(worker), 10, "the old worker to exit")
            ws.send("b")
            assert ws.recv(timeout=5) == "v2:b"  # same socket, new code
    finally:
        server.stop()


HANGING = '''
import time

from channels.routing import route


def consumer(message):
    if message.content["text"] == "hang":
        time.sleep(60)
    message.reply_channel.send({"text": "ok:" + message.content["text"]})


channel_routing = [route("websocket.receive", consumer)]
'''


def test_worker_stuck_in_a_message_is_aborted_and_replaced(tmp_path):
    from tests.supervisor.harness import ROOT

    (tmp_path / "hanging_consumers.py").write_text(HANGING)
    server = RealMaster(["-w", "1", "--timeout", "2"], env={
        "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}",
        "SHMCHANNELS_TEST_ROUTING": "hanging_consumers.channel_routing",
    }).start()
    try:
        server.wait_ready()
        [worker] = server.children("worker")
        with connect(server.url("/any/"), open_timeout=5) as ws:
            ws.send("hang")
            server.wait_log(f"WORKER TIMEOUT: worker 1 (pid {worker})", timeout=15)
            server.wait_children("worker", 1, timeout=30, exclude=[worker])
            ws.send("next")
            assert ws.recv(timeout=10) == "ok:next"
        log = server.log()
        assert f"worker 1 (pid {worker}) exited: signal SIGABRT" in log or \
            f"worker 1 (pid {worker}) exited: signal SIGKILL" in log  # SIGKILL if SIGABRT did not end it
        # SIGABRT made the stuck worker print where it was stuck.
        assert 'hanging_consumers.py", line 9 in consumer' in log
    finally:
        server.stop()
