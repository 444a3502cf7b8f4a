"""channels/__init__.py: the 1.x names, loaded lazily so the package imports light."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_public_names():
    from channels import DEFAULT_CHANNEL_LAYER, Channel, Group, channel_layers, include, route, route_class
    from channels.asgi import ChannelLayerManager
    from channels.channel import Channel as C
    from channels.routing import Include, Route, RouteClass

    assert DEFAULT_CHANNEL_LAYER == "default"
    assert Channel is C and Group.__name__ == "Group"
    assert (route, route_class, include) == (Route, RouteClass, Include)
    assert isinstance(channel_layers, ChannelLayerManager)


def test_unknown_name():
    import channels

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        channels.Nope  # noqa: B018


def test_importing_a_layer_does_not_load_django():
    code = (
        "import sys\n"
        "import channels, channels.layers.inmemory\n"
        "print(sorted(m for m in sys.modules if m == 'django' or m.startswith('django.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_app_config():
    from django.apps import apps

    config = apps.get_app_config("channels")
    assert config.name == "channels" and type(config).__name__ == "ChannelsConfig"
