"""The gunicorn helpers we reuse still exist with the signatures we call."""

from __future__ import annotations

import inspect

from supervisor import _compat_gunicorn as compat


def test_reused_symbols_exist():
    for name in compat.__all__:
        assert getattr(compat, name) is not None, name


def test_signatures_we_rely_on():
    assert list(inspect.signature(compat.parse_address).parameters)[:1] == ["netloc"]
    assert "unset_environment" in inspect.signature(compat.listen_fds).parameters
    assert compat.SD_LISTEN_FDS_START == 3
    pidfile = compat.Pidfile("/nonexistent/x.pid")
    for method in ("create", "unlink", "validate"):
        assert callable(getattr(pidfile, method))
    assert list(inspect.signature(compat.close_on_exec).parameters) == ["fd"]


def test_parse_address_grammar():
    assert compat.parse_address("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert compat.parse_address("[::1]:8001") == ("::1", 8001)
    assert compat.parse_address("unix:/run/x.sock") == "/run/x.sock"
    assert compat.parse_address("fd://5") == 5


def test_pidfile_roundtrip(tmp_path):
    import os
    path = tmp_path / "m.pid"
    pidfile = compat.Pidfile(str(path))
    pidfile.create(os.getpid())
    assert path.read_text().strip() == str(os.getpid())
    pidfile.unlink()
    assert not path.exists()
