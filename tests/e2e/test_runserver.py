"""``manage.py runserver`` (and ``--noworker`` + ``runworker``) serving the tutorial."""

from __future__ import annotations

import os
import secrets

import pytest
from websockets.sync.client import connect

import channels.management.commands.runserver as runserver_module
from tests.e2e.harness import ManageCommand, http_get, project_env, remove_segment, wait_for
from tests.supervisor.harness import alive, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def shm_env():
    segment = f"shmc-rs-{os.getpid()}-{secrets.token_hex(3)}"
    env = project_env(segment)
    yield env
    remove_segment(segment)
    try:
        os.unlink(env["SHMCHANNELS_TEST_DB"])
    except OSError:
        pass


@pytest.fixture
def commands():
    started = []
    yield started
    for command in reversed(started):
        command.stop()


def serves(port, command):
    def ok():
        try:
            return http_get(port, "/hello/", timeout=2)[0] == 200
        except OSError:
            return False

    wait_for(ok, 30, lambda: f"runserver on port {port} (log:\n{command.log()[-3000:]})", interval=0.1)


def echo(port, text):
    with connect(f"ws://127.0.0.1:{port}/echo/", open_timeout=5) as ws:
        ws.send(text)
        assert ws.recv(timeout=5) == text


def test_runserver_shm_reloads_workers_on_code_change_and_keeps_websockets(shm_env, commands):
    port = free_port()
    server = ManageCommand("runserver", [f"127.0.0.1:{port}", "--workers", "1"], shm_env)
    commands.append(server)
    serves(port, server)
    assert "Channel layer default (shmlayer.ShmChannelLayer); 1 interface + 1 worker process(es)" in server.log()
    echo(port, "first")
    with connect(f"ws://127.0.0.1:{port}/echo/", open_timeout=5) as ws:
        before = set(server.processes())
        # A code change (the reloader watches the modules imported by runserver).
        path = runserver_module.__file__
        os.utime(path)
        wait_for(lambda: "Reload of worker done" in server.log(), 20, lambda: f"the reload (log:\n{server.log()[-2000:]})")
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"  # the interface was not restarted
        # One worker retired (gone once it finished), a new one booted.
        wait_for(lambda: before - set(server.processes()), 10, "the old worker to exit")
        assert set(server.processes()) - before
    assert server.stop() == 0
    assert not os.path.exists(f"/dev/shm/{shm_env['SHMCHANNELS_TEST_SEGMENT']}")
    assert not any(alive(pid) for pid in server.seen)


def test_runserver_noworker_with_runworker(shm_env, commands):
    port = free_port()
    server = ManageCommand("runserver", [f"127.0.0.1:{port}", "--noworker"], shm_env)
    commands.append(server)
    wait_for(lambda: "interface only" in server.log(), 30, "the banner")
    worker = ManageCommand("runworker", [], shm_env)
    commands.append(worker)
    serves(port, server)
    echo(port, "via runworker")
    worker.stop()
    assert server.stop() == 0


def test_runserver_in_memory_layer_in_one_process(commands, tmp_path):
    port = free_port()
    env = {"DJANGO_SETTINGS_MODULE": "tests.djangoproject.settings",
           "SHMCHANNELS_TEST_DB": str(tmp_path / "db.sqlite3")}
    server = ManageCommand("runserver", [f"127.0.0.1:{port}", "--noreload"], env)
    commands.append(server)
    serves(port, server)
    assert "InMemoryChannelLayer); in-process" in server.log()
    assert server.processes() == []  # no child processes: worker threads in the same process
    echo(port, "in memory")
    assert server.stop() == 0


def test_noworker_refuses_the_in_memory_layer(commands, tmp_path):
    env = {"DJANGO_SETTINGS_MODULE": "tests.djangoproject.settings",
           "SHMCHANNELS_TEST_DB": str(tmp_path / "db.sqlite3")}
    server = ManageCommand("runserver", [f"127.0.0.1:{free_port()}", "--noworker"], env)
    commands.append(server)
    server.proc.wait(timeout=30)
    assert server.proc.returncode != 0
    assert "--noworker needs a layer other processes can reach" in server.log()


def test_runserver_without_channel_layers_serves_the_site_on_the_shm_default(commands, tmp_path, monkeypatch):
    from shmlayer._segment import default_segment_name

    from tests.supervisor.harness import ROOT

    module = f"shmc_nolayers_{secrets.token_hex(4)}"
    (tmp_path / f"{module}.py").write_text(
        "from tests.djangoproject.settings import *  # noqa\n"
        "del CHANNEL_LAYERS\n"
    )
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", module)
    monkeypatch.chdir(ROOT)
    segment = default_segment_name()  # what every process of this project will use
    env = {"DJANGO_SETTINGS_MODULE": module, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}",
           "SHMCHANNELS_TEST_DB": str(tmp_path / "db.sqlite3")}
    port = free_port()
    server = ManageCommand("runserver", [f"127.0.0.1:{port}", "--noreload"], env)
    commands.append(server)
    try:
        serves(port, server)
        assert "(shmlayer.ShmChannelLayer); 1 interface" in server.log()
        # The default routing: HTTP goes to the Django views, WebSockets are accepted.
        with connect(f"ws://127.0.0.1:{port}/anything/", open_timeout=5) as ws:
            ws.send("ignored")
    finally:
        server.stop()
        remove_segment(segment)
    assert not os.path.exists(f"/dev/shm/{segment}")


def test_master_stops_when_runserver_is_killed(shm_env, commands):
    import signal as signals

    port = free_port()
    server = ManageCommand("runserver", [f"127.0.0.1:{port}", "--noreload"], shm_env)
    commands.append(server)
    serves(port, server)
    everything = server.processes()
    assert len(everything) == 3  # the master, 1 interface, 1 worker
    server.proc.send_signal(signals.SIGKILL)
    server.proc.wait(timeout=5)
    wait_for(lambda: not any(alive(pid) for pid in everything), 15, "the orphaned master and its children to stop")
