"""The Django app config of ``channels``: registers nothing heavy at start-up."""

from __future__ import annotations

from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    """App config for ``"channels"`` in ``INSTALLED_APPS``.

    ``ready()`` only connects the held-send store to the consumer signals (importing
    ``channels.message`` is cheap); layers and routing load on first use.
    """

    name = "channels"
    verbose_name = "Channels"

    def ready(self) -> None:
        # Importing the module connects pending_message_store to consumer_started /
        # consumer_finished, so held sends work whoever sends the signals.
        from . import message  # noqa: F401

        # django.contrib.staticfiles ships its own runserver; when it is listed before
        # "channels" in INSTALLED_APPS, Django picks it. Re-basing it on our command
        # keeps its static-file options while serving through shmchannels (Channels 1.x
        # did the same).
        from django.contrib.staticfiles.management.commands import runserver as static_runserver

        from .management.commands.runserver import Command as ChannelsRunserver

        static_runserver.Command.__bases__ = (ChannelsRunserver,)
