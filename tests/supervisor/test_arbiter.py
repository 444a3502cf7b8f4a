"""The master with fake children: spawn, reap, respawn, backoff, timeouts, signals, reload.

Each test runs the real ``shmchannels`` command (``tests.supervisor.fake_master``) in a
subprocess with tiny timeouts; the children run a fake target steered by flag files.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.supervisor.harness import Master, alive, cmdline, wait_for


@pytest.fixture
def fake_dir(tmp_path):
    return tmp_path


@pytest.fixture
def start(fake_dir):
    masters = []

    def start_master(*args, env=None, **kwargs):
        full_env = {"FAKE_DIR": str(fake_dir), **(env or {})}
        master = Master(["-b", "127.0.0.1:0", "--graceful-timeout", "3", *args], env=full_env, **kwargs).start()
        masters.append(master)
        return master

    yield start_master
    for master in masters:
        master.stop()


def events(fake_dir):
    path = fake_dir / "events"
    return path.read_text().splitlines() if path.exists() else []


def flag(fake_dir, name, value="1"):
    (fake_dir / name).write_text(value)


def unflag(fake_dir, name):
    (fake_dir / name).unlink()


def test_spawn_titles_and_graceful_stop(start, fake_dir):
    master = start("--interfaces", "2", "-w", "2", "-n", "proj")
    interfaces = master.wait_children("interface", 2)
    workers = master.wait_children("worker", 2)
    master.wait_log("Ready:")
    assert cmdline(master.pid) == "shmchannels: master [proj]"
    titles = sorted(cmdline(pid) for pid in interfaces + workers)
    assert titles == ["shmchannels: interface 1 [proj]", "shmchannels: interface 2 [proj]",
                      "shmchannels: worker 1 [proj]", "shmchannels: worker 2 [proj]"]
    started = [line for line in events(fake_dir) if line.startswith("start")]
    assert all("notify=None" in line for line in started)
    assert all(("listeners=1" in line) == (" interface " in f" {line} ") for line in started)
    master.signal(signal.SIGTERM)
    assert master.wait_exit() == 0
    assert not any(alive(pid) for pid in interfaces + workers)
    stopped = [line for line in events(fake_dir) if line.startswith("stopped-term")]
    assert len(stopped) == 4
    assert (fake_dir / "unlinked").exists()  # the layer's segment is removed at a clean exit


def test_dead_children_are_replaced_and_interface_prefix_discarded(start, fake_dir):
    master = start("--interfaces", "1", "-w", "2")
    [interface] = master.wait_children("interface", 1)
    workers = master.wait_children("worker", 2)
    master.wait_log("Ready:")
    os.kill(workers[0], signal.SIGKILL)
    new_workers = master.wait_children("worker", 2, exclude=[workers[0]])
    assert workers[1] in new_workers
    assert "(perhaps out of memory?)" in master.log()
    os.kill(interface, signal.SIGKILL)
    master.wait_children("interface", 1, exclude=[interface])
    wait_for(lambda: (fake_dir / "discarded").exists(), 5, "discard_prefix call")
    assert (fake_dir / "discarded").read_text().split() == [f"interface.fake{interface}!"]


def test_backoff_when_children_keep_failing_at_boot(start, fake_dir):
    master = start("-w", "1")
    [worker] = master.wait_children("worker", 1)
    master.wait_log("Ready:")
    flag(fake_dir, "fail_worker")
    os.kill(worker, signal.SIGKILL)
    master.wait_log("next attempt in 0.5 s")
    master.wait_log("next attempt in 1.0 s")
    assert "FAKE BOOT ERROR worker" in master.log()  # the child's stderr reaches the master's
    unflag(fake_dir, "fail_worker")
    master.wait_children("worker", 1, timeout=10, exclude=[worker])
    master.wait_log("worker 1 (pid", count=2)
    assert master.proc.poll() is None  # still serving: failures after READY never halt


def test_stuck_worker_is_aborted_and_replaced(start, fake_dir):
    master = start("-w", "1", "--timeout", "1")
    [worker] = master.wait_children("worker", 1)
    master.wait_log("Ready:")
    flag(fake_dir, "hang_worker")
    os.kill(worker, signal.SIGKILL)
    hung = master.wait_children("worker", 1, exclude=[worker])[0]
    wait_for(lambda: "booted worker 1" in "".join(line for line in events(fake_dir) if str(hung) in line),
             5, "the replacement to boot")
    unflag(fake_dir, "hang_worker")
    master.wait_log(f"WORKER TIMEOUT: worker 1 (pid {hung})")
    master.wait_children("worker", 1, exclude=[worker, hung])
    assert f"worker 1 (pid {hung}) exited: signal SIGABRT" in master.log() or \
           f"worker 1 (pid {hung}) exited: signal SIGKILL" in master.log()


def test_ttin_ttou_change_the_worker_count(start):
    master = start("-w", "2")
    master.wait_children("worker", 2)
    master.wait_log("Ready:")
    master.signal(signal.SIGTTIN)
    master.wait_children("worker", 3)
    # Standard signals do not queue: wait for each to take effect before the next.
    master.signal(signal.SIGTTOU)
    master.wait_children("worker", 2)
    master.signal(signal.SIGTTOU)
    master.wait_children("worker", 1)
    master.signal(signal.SIGTTOU)  # never below one
    time.sleep(0.3)
    assert len(master.children("worker")) == 1
    assert len(master.children("interface")) == 1


def test_hup_swaps_worker_generation_and_keeps_interfaces(start, fake_dir):
    master = start("--interfaces", "2", "-w", "2")
    interfaces = master.wait_children("interface", 2)
    old_workers = master.wait_children("worker", 2)
    master.wait_log("Ready:")
    master.signal(signal.SIGHUP)
    new_workers = master.wait_children("worker", 2, exclude=old_workers)
    master.wait_log("Reload of worker done")
    assert master.children("interface") == interfaces  # open websockets live there: untouched
    assert not any(alive(pid) for pid in old_workers)
    stopped = [line for line in events(fake_dir) if line.startswith("stopped-term worker")]
    assert sorted(int(line.split()[-1]) for line in stopped) == old_workers
    assert set(new_workers).isdisjoint(old_workers)


def test_hup_with_failing_new_generation_keeps_the_old(start, fake_dir):
    master = start("-w", "2")
    old_workers = master.wait_children("worker", 2)
    # Ready needs only one worker; the flag must not reach an old worker still booting.
    master.wait_log(") booted", count=3)
    flag(fake_dir, "fail_worker")
    master.signal(signal.SIGHUP)
    master.wait_log("Reload failed: worker")
    master.wait_log("keeping the old worker generation")
    # The abandoned generation's children go; the old ones stay.
    wait_for(lambda: master.children("worker") == old_workers, 5, lambda: f"only the old workers ({master.log()[-2000:]})")
    assert "Retiring worker" not in master.log().split("Reload failed")[0]
    unflag(fake_dir, "fail_worker")
    master.signal(signal.SIGHUP)  # the next deploy works again
    master.wait_children("worker", 2, exclude=old_workers)


def test_hup_restarts_interfaces_only_when_their_settings_change(start, fake_dir):
    conf = fake_dir / "shmchannels.conf.py"
    conf.write_text("http_timeout = 10\n")
    master = start("-c", str(conf), "-w", "1")
    [interface] = master.wait_children("interface", 1)
    [worker] = master.wait_children("worker", 1)
    master.wait_log("Ready:")
    conf.write_text("http_timeout = 20\n")
    master.signal(signal.SIGHUP)
    master.wait_children("interface", 1, exclude=[interface])
    master.wait_children("worker", 1, exclude=[worker])
    conf.write_text("http_timeout = 'x'\n")
    master.signal(signal.SIGHUP)
    master.wait_log("Reload failed: http_timeout in")
    assert master.proc.poll() is None


def test_first_generation_boot_failure_exits_nonzero_with_the_error(start, fake_dir):
    flag(fake_dir, "fail_worker")
    master = start("-w", "2")
    assert master.wait_exit() == 1
    log = master.log()
    assert "FAKE BOOT ERROR worker" in log
    assert "failed to boot (exit code 3); see its error above" in log
    assert "Ready:" not in log
    wait_for(lambda: not master.children(), 5, "no children left")


def test_boot_timeout_before_ready_is_a_failure(start, fake_dir):
    flag(fake_dir, "slow_worker", "30")
    master = start("-w", "1", "--timeout", "1")
    assert master.wait_exit() == 1
    assert "worker 1 did not boot in time" in master.log()


def test_usr1_goes_to_children_that_handle_it_and_pidfile(start, fake_dir):
    pidfile = fake_dir / "master.pid"
    master = start("-w", "1", "--pid", str(pidfile))
    master.wait_children("worker", 1)
    master.wait_log("Ready:")
    assert pidfile.read_text().strip() == str(master.pid)
    master.signal(signal.SIGUSR1)
    wait_for(lambda: sum(line.startswith("usr1") for line in events(fake_dir)) == 2, 5, "usr1 in both children")
    master.signal(signal.SIGWINCH)  # ignored
    master.signal(signal.SIGTERM)
    assert master.wait_exit() == 0
    assert not pidfile.exists()


def test_quit_is_a_fast_stop(start, fake_dir):
    master = start("-w", "1")
    master.wait_children("worker", 1)
    master.wait_log("Ready:")
    master.signal(signal.SIGQUIT)
    assert master.wait_exit() == 0
    assert any(line.startswith("stopped-quit") for line in events(fake_dir))


def test_stuck_child_is_killed_at_the_graceful_deadline(start, fake_dir):
    master = start("-w", "1", "--graceful-timeout", "0.5")
    [worker] = master.wait_children("worker", 1)
    master.wait_log("Ready:")
    flag(fake_dir, "hang_worker")
    os.kill(worker, signal.SIGKILL)
    master.wait_children("worker", 1, exclude=[worker])
    master.wait_log("booted", count=3)
    master.signal(signal.SIGTERM)
    assert master.wait_exit() == 0
    assert "still running at the deadline: SIGKILL" in master.log() or "did not stop in time" in master.log()


HOOKS_CONF = """
import os
_LOG = os.path.join(os.environ["FAKE_DIR"], "hooks")

def _write(text):
    with open(_LOG, "a") as handle:
        handle.write(text + "\\n")

def on_starting(server):
    _write("on_starting")

def when_ready(server):
    _write("when_ready %d" % len(server.children))

def on_reload(server):
    _write("on_reload")

def post_fork(server, child):
    _write("post_fork %s %d" % (child.kind, os.getpid()))

def worker_exit(server, child):
    _write("worker_exit %s %d" % (child.kind, os.getpid()))

def child_exit(server, child):
    _write("child_exit %s %d" % (child.kind, child.pid))

def on_exit(server):
    _write("on_exit")
"""


def test_server_hooks_run_where_and_when_documented(start, fake_dir):
    conf = fake_dir / "hooks.conf.py"
    conf.write_text(HOOKS_CONF)
    master = start("-c", str(conf), "-w", "1")
    [interface] = master.wait_children("interface", 1)
    [worker] = master.wait_children("worker", 1)
    master.wait_log("Ready:")
    master.signal(signal.SIGHUP)
    [new_worker] = master.wait_children("worker", 1, exclude=[worker])
    master.signal(signal.SIGTERM)
    assert master.wait_exit() == 0
    lines = (fake_dir / "hooks").read_text().splitlines()
    assert lines[0] == "on_starting"
    assert lines[-1] == "on_exit"
    assert "on_reload" in lines
    assert any(line.startswith("when_ready ") for line in lines)
    for kind, pid in (("interface", interface), ("worker", worker), ("worker", new_worker)):
        assert f"post_fork {kind} {pid}" in lines      # ran in the child itself
        assert f"worker_exit {kind} {pid}" in lines
        assert f"child_exit {kind} {pid}" in lines     # ran in the master after the reap
    assert lines.index(f"child_exit worker {worker}") > lines.index("on_reload")


def test_unix_socket_bind_changes_on_hup_and_is_removed_at_exit(start, fake_dir):
    first, second = fake_dir / "a.sock", fake_dir / "b.sock"
    conf = fake_dir / "unix.conf.py"
    conf.write_text(f"bind = ['unix:{first}']\numask = 0o007\n")
    master = Master(["-c", str(conf), "-w", "1"], env={"FAKE_DIR": str(fake_dir)}).start()
    try:
        [interface] = master.wait_children("interface", 1)
        master.wait_log("Ready:")
        assert first.is_socket() and oct(first.stat().st_mode & 0o777) == oct(0o770)
        conf.write_text(f"bind = ['unix:{second}']\n")
        master.signal(signal.SIGHUP)
        master.wait_children("interface", 1, exclude=[interface])
        assert second.is_socket()
        master.signal(signal.SIGTERM)
        assert master.wait_exit() == 0
        assert not second.exists()
    finally:
        master.stop()


def test_errorlog_file_is_reopened_on_usr1(start, fake_dir):
    errorlog = fake_dir / "error.log"
    master = start("-w", "1", "--error-logfile", str(errorlog))
    master.wait_children("worker", 1)
    wait_for(lambda: errorlog.exists() and "Ready:" in errorlog.read_text(), 10, "Ready in the error log")
    rotated = fake_dir / "error.log.1"
    errorlog.rename(rotated)
    master.signal(signal.SIGUSR1)
    wait_for(lambda: errorlog.exists(), 5, "a new error log")
    master.signal(signal.SIGTERM)
    assert master.wait_exit() == 0
    assert "Shutting down: master" in errorlog.read_text()
    assert "Shutting down" not in rotated.read_text()


@pytest.fixture
def shared_dir():
    import shutil
    import tempfile
    path = tempfile.mkdtemp(prefix="shmchannels-priv-")
    os.chmod(path, 0o777)  # the children, running as nobody, write their events here
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_children_drop_privileges_to_user(start, shared_dir):
    if os.getuid() != 0:
        pytest.skip("needs root to switch users")
    master = start("-w", "1", "-u", "nobody", "-g", "nogroup", env={"FAKE_DIR": shared_dir})
    [worker] = master.wait_children("worker", 1)
    master.wait_log("Ready:")
    with open(f"/proc/{worker}/status") as handle:
        status = dict(line.split(":", 1) for line in handle if ":" in line)
    import pwd
    nobody = pwd.getpwnam("nobody").pw_uid
    assert int(status["Uid"].split()[0]) == nobody
    with open(f"/proc/{master.pid}/status") as handle:
        assert "Uid:\t0" in handle.read()  # the master keeps its user


def test_children_exit_when_the_master_is_killed(start, fake_dir):
    master = start("--interfaces", "2", "-w", "2")
    children = master.wait_children("interface", 2) + master.wait_children("worker", 2)
    master.wait_log("Ready:")
    master.signal(signal.SIGKILL)
    master.wait_exit()
    # PR_SET_PDEATHSIG delivers SIGTERM to each child: they stop as if told to.
    wait_for(lambda: not any(alive(pid) for pid in children), 10, "orphaned children to exit")
    assert sum(line.startswith("stopped-term") for line in events(fake_dir)) == 4


def test_ipv6_bind(start, fake_dir):
    import socket
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 on this host")
    master = start("-b", "[::1]:0", "-w", "1")
    master.wait_log("Ready:")
    assert "Listening at [::1]:" in master.log()


def test_hup_during_a_reload_keeps_the_serving_generation_until_the_newest_boots(start, fake_dir):
    master = start("-w", "2")
    old_workers = master.wait_children("worker", 2)
    master.wait_log(") booted", count=3)  # every old child, not just the one Ready needs
    flag(fake_dir, "slow_worker", "1.0")
    master.signal(signal.SIGHUP)
    master.wait_log("Booting a new worker generation", count=1)
    time.sleep(0.2)
    unflag(fake_dir, "slow_worker")
    master.signal(signal.SIGHUP)
    master.wait_log("Booting a new worker generation", count=2)
    newest = master.wait_children("worker", 2, timeout=15, exclude=old_workers)
    master.wait_log("Reload of worker done")
    wait_for(lambda: master.children("worker") == newest, 10, "only the newest generation")
    booted = [line for line in events(fake_dir) if line.startswith("booted worker")]
    # The old two, then the newest two; the middle generation never served (or was retired).
    assert all(str(pid) in " ".join(booted) for pid in newest)


def test_worker_only_host_binds_nothing(start, fake_dir):
    master = start("--interfaces", "0", "-w", "2")
    master.wait_children("worker", 2)
    master.wait_log("Ready: 0/0 interfaces")
    assert "Listening at" not in master.log()
    assert master.children("interface") == []


def test_interface_only_host(start, fake_dir):
    master = start("-w", "0", "--interfaces", "2")
    master.wait_children("interface", 2)
    master.wait_log("Ready:")
    assert master.children("worker") == []
    master.signal(signal.SIGTERM)
    assert master.wait_exit() == 0
