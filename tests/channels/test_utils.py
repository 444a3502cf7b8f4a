"""channels.utils: names for logs and dotted-path imports with clear errors."""

from __future__ import annotations

import functools

import pytest
from django.core.exceptions import ImproperlyConfigured

from channels.routing import Route
from channels.utils import import_by_path, name_that_thing


def plain(message):
    pass


class Thing:
    def method(self):
        pass


def test_name_that_thing():
    assert name_that_thing(plain) == "tests.channels.test_utils.plain"
    assert name_that_thing(Thing) == "tests.channels.test_utils.Thing"
    assert name_that_thing(Thing().method) == "tests.channels.test_utils.Thing instance.method"
    assert name_that_thing(functools.partial(plain)) == "functools.partial instance"
    assert name_that_thing(Thing()) == "tests.channels.test_utils.Thing instance"


def test_import_by_path():
    assert import_by_path("channels.routing.Route", "x") is Route
    with pytest.raises(ImproperlyConfigured, match="must be a dotted path"):
        import_by_path("Route", "consumer")
    with pytest.raises(ImproperlyConfigured, match="Cannot import consumer 'no_such_module.x': No module"):
        import_by_path("no_such_module.x", "consumer")
