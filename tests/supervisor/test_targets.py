"""The real ChildSpec table and the interface options built from the config."""

from __future__ import annotations

import secrets

from supervisor._config import load_config
from supervisor._targets import build_specs, interface_options, interface_target, worker_target


def test_spec_table_rows():
    config = load_config(["--interfaces", "2", "-w", "3", "-t", "7"], environ={}, cwd="/")
    interface, worker = build_specs(config)
    assert (interface.kind, interface.count, interface.target, interface.timeout) == ("interface", 2, interface_target, 7)
    assert interface.gets_listeners and not interface.reload_always and not interface.scalable
    assert (worker.kind, worker.count, worker.target) == ("worker", 3, worker_target)
    assert not worker.gets_listeners and worker.reload_always and worker.scalable


def test_interface_fingerprint_follows_interface_settings_only():
    base = build_specs(load_config([], environ={}, cwd="/"))[0].fingerprint
    assert build_specs(load_config(["-w", "5"], environ={}, cwd="/"))[0].fingerprint == base
    assert build_specs(load_config(["--http-timeout", "9"], environ={}, cwd="/"))[0].fingerprint != base
    assert build_specs(load_config(["-b", "127.0.0.1:9"], environ={}, cwd="/"))[0].fingerprint != base


def test_interface_options_from_config_and_django_settings(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    module = f"shmc_opts_{secrets.token_hex(4)}"
    (tmp_path / f"{module}.py").write_text("CHANNELS_WS_PROTOCOLS = ['chat.v1']\nFORCE_SCRIPT_NAME = '/app'\n")
    config = load_config(["--http-timeout", "9", "--proxy-headers", "--forwarded-allow-ips", "10.0.0.1,10.0.0.2",
                          "--access-logfile", "-", "--websocket-timeout", "-1", module], environ={}, cwd="/")
    options = interface_options(config)
    assert options.http_timeout == 9 and options.proxy_headers is True
    assert options.forwarded_allow_ips == ("10.0.0.1", "10.0.0.2")
    assert options.access_log == "-" and options.websocket_timeout == -1
    assert options.ws_protocols == ("chat.v1",) and options.root_path == "/app"
    explicit = load_config(["--root-path", "/other", module], environ={}, cwd="/")
    assert interface_options(explicit).root_path == "/other"
