"""channels.asgi: CHANNEL_LAYERS loading, 1.x alias paths, default capacities, errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test.utils import override_settings

import channels.asgi
from channels.asgi import (
    DEFAULT_CHANNEL_CAPACITY,
    ChannelLayerManager,
    ChannelLayerWrapper,
    InvalidChannelLayerError,
    get_channel_layer,
)
from channels.layers.inmemory import InMemoryChannelLayer

ROUTING = "tests.djangoproject.routing.channel_routing"


def layers(**configs):
    return override_settings(CHANNEL_LAYERS=configs)


@pytest.mark.parametrize("backend", ["asgiref.inmemory.ChannelLayer", "channels.layers.inmemory.InMemoryChannelLayer"])
def test_inmemory_paths(backend):
    with layers(default={"BACKEND": backend, "ROUTING": ROUTING}):
        wrapper = ChannelLayerManager()["default"]
    assert isinstance(wrapper, ChannelLayerWrapper)
    assert type(wrapper.channel_layer) is InMemoryChannelLayer
    assert wrapper.alias == "default" and wrapper.routing == ROUTING
    assert "websocket.connect" in wrapper.router.channels


@pytest.mark.parametrize("backend", ["asgi_redis.RedisChannelLayer", "channels.layers.redis.RedisChannelLayer"])
def test_redis_paths(backend):
    from channels.layers.redis import RedisChannelLayer

    config = {"hosts": [("127.0.0.1", 6379)], "capacity": 50}
    with layers(default={"BACKEND": backend, "CONFIG": config}):
        layer = ChannelLayerManager()["default"].channel_layer
    assert type(layer) is RedisChannelLayer and layer.capacity == 50


@pytest.mark.parametrize("backend", ["asgi_ipc.IPCChannelLayer", "shmlayer.ShmChannelLayer"])
def test_shm_paths(backend, monkeypatch):
    # The shm layer is constructed with the translated CONFIG; a stand-in class records
    # what it got, so this test does not depend on (or create) a real segment.
    import shmlayer
    from shmlayer.contract import BaseChannelLayer

    class Recorder(BaseChannelLayer):
        def __init__(self, name=None, size=64 << 20, **kwargs):
            super().__init__(**kwargs)
            self.name, self.size = name, size

    monkeypatch.setattr(shmlayer, "ShmChannelLayer", Recorder, raising=False)
    config = {"prefix": "myproj", "message_memory": 10 << 20, "group_memory": 2 << 20, "capacity": 10}
    if backend == "shmlayer.ShmChannelLayer":
        config = {"name": "myproj", "size": 12 << 20, "capacity": 10}
    with layers(default={"BACKEND": backend, "CONFIG": config}):
        layer = ChannelLayerManager()["default"].channel_layer
    assert isinstance(layer, Recorder)
    assert (layer.name, layer.size, layer.capacity) == ("myproj", 12 << 20, 10)


def test_default_without_setting_is_shm_with_empty_routing():
    with override_settings():
        from django.conf import settings

        del settings.CHANNEL_LAYERS
        configs = ChannelLayerManager().configs
    assert configs == {"default": {"BACKEND": "shmlayer.ShmChannelLayer", "ROUTING": []}}


def test_default_capacities_merge_under_users():
    config = {"channel_capacity": {"websocket.receive": 7, "chat-*": 3}}
    with layers(default={"BACKEND": "asgiref.inmemory.ChannelLayer", "CONFIG": config}):
        layer = ChannelLayerManager()["default"].channel_layer
    assert layer.get_capacity("websocket.receive") == 7
    assert layer.get_capacity("chat-messages") == 3
    assert layer.get_capacity("http.request") == DEFAULT_CHANNEL_CAPACITY["http.request"] == 200
    assert layer.get_capacity("websocket.connect") == 200
    assert layer.get_capacity("websocket.disconnect") == 500
    assert layer.get_capacity("__wait__.interface.AbC.conn7") == 500
    assert layer.get_capacity("other") == layer.capacity


def test_bad_backend_path():
    with layers(default={"BACKEND": "nope.Layer"}):
        with pytest.raises(InvalidChannelLayerError, match=r"CHANNEL_LAYERS\['default'\].*'nope.Layer'.*No module"):
            ChannelLayerManager()["default"]
    with layers(default={"BACKEND": "channels.layers.inmemory.Nope"}):
        with pytest.raises(InvalidChannelLayerError, match="has no 'Nope'"):
            ChannelLayerManager()["default"]
    with layers(default={"CONFIG": {}}):
        with pytest.raises(InvalidChannelLayerError, match="has no BACKEND"):
            ChannelLayerManager()["default"]


def test_bad_config():
    with layers(default={"BACKEND": "asgiref.inmemory.ChannelLayer", "CONFIG": {"hosts": ["x"]}}):
        with pytest.raises(InvalidChannelLayerError, match="cannot create .*InMemoryChannelLayer.*hosts"):
            ChannelLayerManager()["default"]
    with layers(default={"BACKEND": "asgiref.inmemory.ChannelLayer", "CONFIG": {"capacity": 0}}):
        with pytest.raises(InvalidChannelLayerError, match="capacity"):
            ChannelLayerManager()["default"]
    with layers(default={"BACKEND": "asgiref.inmemory.ChannelLayer", "CONFIG": [1]}):
        with pytest.raises(InvalidChannelLayerError, match="CONFIG'\\] must be a dict"):
            ChannelLayerManager()["default"]
    with override_settings(CHANNEL_LAYERS=["x"]):
        with pytest.raises(InvalidChannelLayerError, match="must be a dict"):
            ChannelLayerManager()["default"]


def test_unknown_alias():
    with layers(default={"BACKEND": "asgiref.inmemory.ChannelLayer"}):
        manager = ChannelLayerManager()
        assert "default" in manager and "other" not in manager
        with pytest.raises(InvalidChannelLayerError, match="No channel layer 'other'.*'default'"):
            manager["other"]


def test_missing_routing_module_and_bad_entries_fail_at_router():
    with layers(default={"BACKEND": "asgiref.inmemory.ChannelLayer", "ROUTING": "myproject.routing.channel_routing"}):
        wrapper = ChannelLayerManager()["default"]
    with pytest.raises(ImproperlyConfigured, match="Cannot import channel routing 'myproject.routing.channel_routing'"):
        wrapper.router
    wrapper = ChannelLayerWrapper(InMemoryChannelLayer(), "default", "tests.channels.test_asgi.BAD_ROUTING")
    with pytest.raises(ImproperlyConfigured, match="Routing entry 0 in tests.channels.test_asgi.BAD_ROUTING"):
        wrapper.router


BAD_ROUTING = [("websocket.connect", "x.y")]


def test_wrapper_delegates_to_layer_and_caches():
    with layers(default={"BACKEND": "asgiref.inmemory.ChannelLayer"}):
        manager = ChannelLayerManager()
        wrapper = manager["default"]
        assert manager["default"] is wrapper
    wrapper.send("a", {"x": 1})
    assert wrapper.receive(["a"]) == ("a", {"x": 1})
    assert wrapper.ChannelFull is InMemoryChannelLayer.ChannelFull
    assert wrapper.router.channels == set()  # no ROUTING: empty
    assert "default" in str(wrapper)
    replacement = ChannelLayerWrapper(InMemoryChannelLayer(), "default", [])
    assert manager.set("default", replacement) is wrapper
    assert manager["default"] is replacement
    manager.reset()
    assert manager.backends == {}


def test_get_channel_layer_and_module_attribute():
    layer = get_channel_layer()
    assert layer is channels.asgi.channel_layers["default"].channel_layer
    assert channels.asgi.channel_layer is layer
    with pytest.raises(AttributeError):
        channels.asgi.no_such_thing


def test_project_asgi_module_style_in_a_fresh_process():
    # What an interface server does with "project.asgi:channel_layer": Django is set up
    # by get_channel_layer itself.
    code = (
        "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.djangoproject.settings'\n"
        "from channels.asgi import get_channel_layer\n"
        "channel_layer = get_channel_layer()\n"
        "from django.apps import apps; assert apps.ready\n"
        "print(type(channel_layer).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "InMemoryChannelLayer"


def test_no_settings_gives_a_clear_error_in_a_fresh_process():
    code = (
        "import os; os.environ.pop('DJANGO_SETTINGS_MODULE', None)\n"
        "from channels.asgi import get_channel_layer\n"
        "get_channel_layer()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "DJANGO_SETTINGS_MODULE" in out.stderr


def test_real_shm_layer_from_an_asgi_ipc_config():
    import shmlayer
    from shmlayer.contract import random_suffix

    name = f"shmchannels-test-asgi-{random_suffix(8)}"
    config = {"prefix": name, "message_memory": 6 << 20, "group_memory": 2 << 20}
    with layers(default={"BACKEND": "asgi_ipc.IPCChannelLayer", "CONFIG": config}):
        wrapper = ChannelLayerManager().make_backend("default")
    layer = wrapper.channel_layer
    try:
        assert type(layer) is shmlayer.ShmChannelLayer
        assert layer.get_capacity("websocket.receive") == 500
        wrapper.send("tests.shm", {"text": "through shared memory"})
        assert wrapper.receive(["tests.shm"]) == ("tests.shm", {"text": "through shared memory"})
    finally:
        layer.close()
        layer.unlink()
