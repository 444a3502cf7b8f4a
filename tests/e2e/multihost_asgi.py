"""``project.asgi:channel_layer`` of the test project, as a Channels 1.x project had it.

``shmchannels-interface tests.e2e.multihost_asgi:channel_layer`` serves with the layer the
settings select (``SHMCHANNELS_TEST_LAYER=redis`` in the multi-host tests).
"""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.djangoproject.settings")

from channels.asgi import get_channel_layer  # noqa: E402

channel_layer = get_channel_layer()
