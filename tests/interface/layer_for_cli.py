"""A channel layer object for the CLI tests (``tests.interface.layer_for_cli:channel_layer``)."""

from channels.layers.inmemory import InMemoryChannelLayer

channel_layer = InMemoryChannelLayer()
not_a_layer = object()
