"""The master reads CHANNEL_LAYERS from the settings module only (no django.setup())."""

from __future__ import annotations

import os
import secrets
import sys

import pytest

from supervisor._layer import LayerError, build_layer, layer_entry, project_name


@pytest.fixture
def settings_module(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(text):
        name = f"shmc_settings_{secrets.token_hex(4)}"
        (tmp_path / f"{name}.py").write_text(text)
        return name

    yield make


def test_entry_and_default(settings_module):
    assert layer_entry(settings_module("X = 1\n"), "default")["BACKEND"] == "shmlayer.ShmChannelLayer"
    module = settings_module("CHANNEL_LAYERS = {'default': {'BACKEND': 'asgi_ipc.IPCChannelLayer'}}\n")
    assert layer_entry(module, "default") == {"BACKEND": "asgi_ipc.IPCChannelLayer"}
    with pytest.raises(LayerError, match="has no layer 'other'"):
        layer_entry(module, "other")


def test_errors_are_one_line(settings_module):
    with pytest.raises(LayerError, match="no Django settings module"):
        layer_entry(None, "default")
    broken = settings_module("import nonexistent_xyz\n")
    with pytest.raises(LayerError, match=f"cannot import the settings module '{broken}': ModuleNotFoundError"):
        layer_entry(broken, "default")
    memory = settings_module("CHANNEL_LAYERS = {'default': {'BACKEND': 'asgiref.inmemory.ChannelLayer'}}\n")
    with pytest.raises(LayerError, match="in-memory layer, which cannot span processes"):
        build_layer(memory, "default")
    bad = settings_module("CHANNEL_LAYERS = {'default': {'BACKEND': 'no.such.Layer'}}\n")
    with pytest.raises(LayerError) as info:
        build_layer(bad, "default")
    assert "\n" not in str(info.value)


def test_build_shm_layer_without_django_setup(settings_module):
    segment = f"shmc-layer-test-{os.getpid()}-{secrets.token_hex(3)}"
    module = settings_module(
        f"CHANNEL_LAYERS = {{'default': {{'BACKEND': 'shmlayer.ShmChannelLayer', 'CONFIG': {{'name': {segment!r}}}}}}}\n")
    layer = build_layer(module, "default")
    try:
        assert layer.segment_name == segment
        assert os.path.exists(f"/dev/shm/{segment}")
    finally:
        layer.unlink()
        layer.close()
    assert not os.path.exists(f"/dev/shm/{segment}")


def test_project_name():
    assert project_name("mysite.settings") == "mysite"
    assert project_name("mysite.settings.prod") == "mysite.settings.prod"
    assert project_name(None) == "shmchannels"


def test_settings_module_is_not_left_for_children_to_inherit(settings_module):
    # A worker forked after a SIGHUP must import the project's settings afresh.
    module = settings_module("import json\nCHANNEL_LAYERS = {'default': {'BACKEND': 'asgi_ipc.IPCChannelLayer'}}\n")
    layer_entry(module, "default")
    assert module not in sys.modules
    assert "json" in sys.modules  # library modules stay
