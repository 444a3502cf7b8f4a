"""The settings table, the parser, the config file loader and their precedence."""

from __future__ import annotations

import os
import subprocess
import textwrap

import pytest

from supervisor._config import ENV_ARGS, build_parser, load_config, load_file
from supervisor._settings import SETTINGS, ConfigError, check_address, render_markdown
from tests.supervisor.harness import PYTHON, ROOT


def write(tmp_path, text, name="shmchannels.conf.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_defaults_come_from_the_table(tmp_path):
    config = load_config([], environ={}, cwd=str(tmp_path))
    for setting in SETTINGS:
        assert getattr(config, setting.name) == setting.default
        assert config.sources[setting.name] == "default"
    assert config.config_file is None


def test_every_flagged_setting_is_in_the_parser():
    parser = build_parser()
    dests = {action.dest for action in parser._actions}
    for setting in SETTINGS:
        assert (setting.name in dests) == bool(setting.flags), setting.name


def test_file_values_are_typed(tmp_path):
    path = write(tmp_path, """
        import os
        bind = ["127.0.0.1:9000", "[::1]:9001", "unix:/tmp/x.sock"]
        workers = 4
        timeout = "12"
        graceful_timeout = 2
        proxy_headers = True
        forwarded_allow_ips = "10.0.0.1, 10.0.0.2"
        umask = "0o27"
        _helper = 3
        def when_ready(server):
            pass
    """)
    config = load_config(["-c", path], environ={})
    assert config.bind == ["127.0.0.1:9000", "[::1]:9001", "unix:/tmp/x.sock"]
    assert config.workers == 4 and config.timeout == 12 and config.graceful_timeout == 2.0
    assert config.proxy_headers is True
    assert config.forwarded_allow_ips == ["10.0.0.1", "10.0.0.2"]
    assert config.umask == 0o27
    assert callable(config.hook("when_ready"))
    assert config.sources["workers"] == path


def test_precedence_cli_beats_env_beats_file_beats_default(tmp_path):
    write(tmp_path, "workers = 3\ninterfaces = 3\ntimeout = 7\n")
    env = {ENV_ARGS: "--workers 5 --interfaces 4"}
    config = load_config(["-w", "6"], environ=env, cwd=str(tmp_path))
    assert config.config_file == str(tmp_path / "shmchannels.conf.py")  # read from the cwd
    assert config.workers == 6 and config.sources["workers"] == "the command line"
    assert config.interfaces == 4 and config.sources["interfaces"] == ENV_ARGS
    assert config.timeout == 7
    assert config.graceful_timeout == 30.0


def test_bind_on_the_command_line_replaces_the_file(tmp_path):
    path = write(tmp_path, "bind = ['127.0.0.1:9000', '127.0.0.1:9001']\n")
    config = load_config(["-c", path, "-b", "127.0.0.1:9100", "-b", "unix:/tmp/a.sock"], environ={})
    assert config.bind == ["127.0.0.1:9100", "unix:/tmp/a.sock"]


def test_positional_settings_module(tmp_path):
    config = load_config(["proj.settings"], environ={}, cwd=str(tmp_path))
    assert config.django_settings == "proj.settings"
    assert config.settings_module == "proj.settings"


@pytest.mark.parametrize("text, key, fragment", [
    ("wokers = 2\n", "wokers", "unknown setting"),
    ("workers = 'two'\n", "workers", "must be an integer"),
    ("workers = -1\n", "workers", ">= 0"),
    ("worker_threads = 0\n", "worker_threads", ">= 1"),
    ("workers = True\n", "workers", "must be an integer"),
    ("bind = ['::1:8000']\n", "bind", "bad address"),
    ("bind = ['127.0.0.1:http']\n", "bind", "bad address"),
    ("bind = ['127.0.0.1:70000']\n", "bind", "out of range"),
    ("bind = []\n", "bind", "non-empty"),
    ("loglevel = 'loud'\n", "loglevel", "must be one of"),
    ("proxy_headers = 'maybe'\n", "proxy_headers", "True or False"),
    ("raw_env = ['NOVALUE']\n", "raw_env", "KEY=VALUE"),
    ("http_timeout = 0\n", "http_timeout", "positive"),
    ("umask = 'abc'\n", "umask", "octal"),
    ("def when_ready():\n    pass\n", "when_ready", "1 positional argument"),
    ("def post_fork(server):\n    pass\n", "post_fork", "2 positional arguments"),
    ("on_exit = 3\n", "on_exit", "must be a function"),
])
def test_bad_file_values_name_key_and_file(tmp_path, text, key, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_file(path)
    message = str(info.value)
    assert message.startswith(f"{key} in {path}:")
    assert fragment in message
    assert "\n" not in message


def test_hooks_with_defaults_or_varargs_are_accepted(tmp_path):
    path = write(tmp_path, "def post_fork(server, child, extra=None):\n    pass\n"
                           "def on_exit(*args):\n    pass\n")
    values = load_file(path)
    assert set(values) == {"post_fork", "on_exit"}


def test_file_errors_are_one_line(tmp_path):
    broken = write(tmp_path, "workers = (\n", "broken.py")
    with pytest.raises(ConfigError, match=r"syntax error on line"):
        load_file(broken)
    raising = write(tmp_path, "import nonexistent_module_xyz\n", "raising.py")
    with pytest.raises(ConfigError, match=r"ModuleNotFoundError"):
        load_file(raising)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(["-c", str(tmp_path / "missing.py")], environ={})


def test_bad_command_line_values():
    with pytest.raises(ConfigError, match=r"^workers in the command line: must be an integer"):
        load_config(["-w", "two"], environ={}, cwd="/")
    with pytest.raises(ConfigError, match=rf"^timeout in {ENV_ARGS}:"):
        load_config([], environ={ENV_ARGS: "--timeout -3"}, cwd="/")
    with pytest.raises(ConfigError, match=r"unrecognized arguments"):
        load_config(["--no-such-flag"], environ={}, cwd="/")


@pytest.mark.parametrize("address", ["127.0.0.1:8000", "[::1]:8000", "localhost", "unix:/run/a.sock",
                                     "unix:///run/a.sock", "fd://3", "tcp://127.0.0.1:80", "0.0.0.0:0"])
def test_good_addresses(address):
    assert check_address(address) == address


@pytest.mark.parametrize("address", ["", "::1:8000", "[::1:8000", "127.0.0.1:x", "fd://x", "unix:", ":80",
                                     "127.0.0.1:65536"])
def test_bad_addresses(address):
    with pytest.raises(ConfigError, match="bind in the command line: bad address"):
        check_address(address)


def test_reference_renders_every_setting():
    text = render_markdown()
    for setting in SETTINGS:
        assert f"| `{setting.name}` |" in text
    assert "`--workers`" in text and "(file only)" in text


def run_command(args, cwd, env=None):
    full_env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    full_env.pop(ENV_ARGS, None)
    full_env.update(env or {})
    return subprocess.run([PYTHON, "-m", "supervisor", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=30)


@pytest.mark.parametrize("conf, args, env, expected", [
    ("wokers = 2\n", [], {}, "wokers in {conf}: unknown setting"),
    ("timeout = 'soon'\n", [], {}, "timeout in {conf}: must be an integer"),
    ("bind = ['::1:80']\n", [], {}, "bind in {conf}: bad address"),
    ("def on_exit(a, b):\n    pass\n", [], {}, "on_exit in {conf}: must take 1 positional argument"),
    (None, ["-b", "[::1"], {}, "bind in the command line: bad address"),
    (None, ["-w", "many"], {}, "workers in the command line: must be an integer"),
    (None, [], {ENV_ARGS: "--threads zero"}, f"worker_threads in {ENV_ARGS}: must be an integer"),
])
def test_real_command_reports_bad_config_in_one_line(tmp_path, conf, args, env, expected):
    conf_path = write(tmp_path, conf) if conf is not None else None
    result = run_command(args, cwd=str(tmp_path), env=env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert expected.format(conf=conf_path) in lines[0]
    assert lines[0].startswith("shmchannels: error: ")


def test_print_config_shows_resolved_values(tmp_path):
    write(tmp_path, "workers = 3\n")
    result = run_command(["--print-config", "--interfaces", "2"], cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "workers                    = 3" in result.stdout
    assert "interfaces                 = 2" in result.stdout


def _settings_module(tmp_path, name, layers):
    (tmp_path / f"{name}.py").write_text(f"CHANNEL_LAYERS = {layers!r}\n")


def test_check_config(tmp_path):
    _settings_module(tmp_path, "shm_settings", {"default": {"BACKEND": "asgi_ipc.IPCChannelLayer"}})
    _settings_module(tmp_path, "mem_settings", {"default": {"BACKEND": "asgiref.inmemory.ChannelLayer"}})
    good = run_command(["--check-config", "shm_settings"], cwd=str(tmp_path))
    assert good.returncode == 0, good.stderr
    assert "configuration OK" in good.stdout
    memory = run_command(["--check-config", "mem_settings"], cwd=str(tmp_path))
    assert memory.returncode == 1
    assert "in-memory layer" in memory.stderr and len(memory.stderr.strip().splitlines()) == 1
    missing = run_command(["--check-config", "no_such_settings_mod"], cwd=str(tmp_path))
    assert missing.returncode == 1
    assert "cannot import the settings module 'no_such_settings_mod'" in missing.stderr
    alias = run_command(["--check-config", "--layer", "other", "shm_settings"], cwd=str(tmp_path))
    assert alias.returncode == 1 and "has no layer 'other'" in alias.stderr
    user = run_command(["--check-config", "-u", "no-such-user-xyz", "shm_settings"], cwd=str(tmp_path))
    assert user.returncode == 1 and "no such user: no-such-user-xyz" in user.stderr


def test_bind_failure_is_one_line(tmp_path):
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_command(["-b", f"127.0.0.1:{port}", "some.settings"], cwd=str(tmp_path))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_gunicorn_aliases(tmp_path):
    path = write(tmp_path, "threads = 3\nmax_requests = 100\nmax_requests_jitter = 10\n")
    config = load_config(["-c", path], environ={})
    assert (config.worker_threads, config.max_messages, config.max_messages_jitter) == (3, 100, 10)
    assert load_config(["--max-requests", "7"], environ={}, cwd="/").max_messages == 7
    twice = write(tmp_path, "threads = 3\nworker_threads = 4\n", "twice.py")
    with pytest.raises(ConfigError, match="a second time"):
        load_file(twice)


def test_parent_pid_mismatch_stops_at_once(tmp_path):
    result = run_command(["-w", "1", "x.settings"], cwd=str(tmp_path), env={"SHMCHANNELS_PARENT_PID": "1"})
    assert result.returncode == 1
    assert "SHMCHANNELS_PARENT_PID" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_interface_only_and_worker_only_hosts(tmp_path):
    assert load_config(["-w", "0"], environ={}, cwd="/").workers == 0
    assert load_config(["--interfaces", "0"], environ={}, cwd="/").interfaces == 0
    path = write(tmp_path, "interfaces = 0\n")
    with pytest.raises(ConfigError, match=r"^workers in the command line: interfaces and workers cannot both be 0"):
        load_config(["-c", path, "-w", "0"], environ={})


#: A master whose segment cannot be handed over to ``user`` (chown refused): it must
#: remove the segment it just created and close its socket before exiting with 1.
HANDOVER_FAILS = """
import os, sys
from supervisor.cli import main
path = sys.argv[1]
open(path, "w").close()

class Layer:
    segment_name = os.path.basename(path)
    def unlink(self):
        os.unlink(path)
    def close(self):
        pass

def refuse(*args):
    raise PermissionError(1, "Operation not permitted", path)

os.chown = refuse
sys.exit(main(sys.argv[2:], specs_factory=lambda config: [], layer_loader=lambda config: Layer()))
"""


def test_segment_that_cannot_be_handed_over_is_removed(tmp_path):
    from tests.supervisor.harness import free_port

    segment = f"/dev/shm/shmc-handover-{os.getpid()}"
    try:
        result = subprocess.run(
            [PYTHON, "-c", HANDOVER_FAILS, segment, "-b", f"127.0.0.1:{free_port()}", "--user", "root",
             "some.settings"],
            cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=30)
        assert result.returncode == 1, result.stderr
        assert "Operation not permitted" in result.stderr and "Traceback" not in result.stderr
        assert not os.path.exists(segment)
    finally:
        if os.path.exists(segment):
            os.unlink(segment)
