"""The channel layer object, the Channels 1.x way.

Channels 1.x projects exposed ``channel_layer`` from ``<project>/asgi.py`` so that
interface servers (``daphne chatsite.asgi:channel_layer``) and workers found the same
layer. shmchannels reads ``CHANNEL_LAYERS`` itself, but the module keeps the 1.x shape
so the project reads like any Channels 1.x project.
"""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

from channels.asgi import get_channel_layer  # noqa: E402  (settings module must be set first)

channel_layer = get_channel_layer()
