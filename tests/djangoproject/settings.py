"""Settings of the small Django project the channels/worker/e2e tests run."""
import os
import tempfile

BASE_DIR = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = "tests-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "channels",
    "tests.djangoproject.chatapp",  # the tutorial's ChatMessage model (tests/djangoproject/tutorial.py)
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "tests.djangoproject.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # A file, not :memory:, so sessions are shared by worker processes.
        "NAME": os.environ.get("SHMCHANNELS_TEST_DB", os.path.join(tempfile.gettempdir(), "shmchannels-tests.sqlite3")),
        # Several worker processes save channel sessions at once: a writer waits for the
        # lock (IMMEDIATE takes it at BEGIN) instead of failing with "database is locked".
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }
}
USE_TZ = True
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "asgiref.inmemory.ChannelLayer",
        "ROUTING": "tests.djangoproject.routing.channel_routing",
    },
}

# Worker process tests (tests/worker/test_runworker.py) run `runworker` in subprocesses,
# which the in-memory layer cannot reach: they select a shm layer with its own segment.
if os.environ.get("SHMCHANNELS_TEST_LAYER") == "shm":
    CHANNEL_LAYERS["default"] = {
        "BACKEND": "shmlayer.ShmChannelLayer",
        "CONFIG": {"name": os.environ["SHMCHANNELS_TEST_SEGMENT"]},
        "ROUTING": os.environ.get("SHMCHANNELS_TEST_ROUTING", CHANNEL_LAYERS["default"]["ROUTING"]),
    }

# Multi-host tests (tests/e2e/test_multihost.py) run several masters on one private
# redis-server, as several hosts would: they select the Redis layer with their own prefix.
if os.environ.get("SHMCHANNELS_TEST_LAYER") == "redis":
    CHANNEL_LAYERS["default"] = {
        "BACKEND": "asgi_redis.RedisChannelLayer",
        "CONFIG": {
            "hosts": [os.environ["SHMCHANNELS_TEST_REDIS_URL"]],
            "prefix": os.environ.get("SHMCHANNELS_TEST_REDIS_PREFIX", "asgi:"),
        },
        "ROUTING": os.environ.get("SHMCHANNELS_TEST_ROUTING", CHANNEL_LAYERS["default"]["ROUTING"]),
    }
