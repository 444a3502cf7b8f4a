"""Settings of the example chat site (the one ``make run`` serves).

Two environment variables let tests run an isolated copy next to a developer's:
``SHMCHANNELS_EXAMPLE_DB`` (the sqlite file) and ``SHMCHANNELS_SEGMENT`` (the name of
the shared-memory segment holding the channel layer).
"""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# A development-only site: the key is public on purpose, DEBUG is on.
SECRET_KEY = "example-chat-site-not-a-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "channels",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatsite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHMCHANNELS_EXAMPLE_DB") or str(BASE_DIR / "db.sqlite3"),
        "OPTIONS": {
            # Several worker processes write (messages, channel sessions) at once:
            # WAL lets readers run beside the writer, and the timeout makes a writer
            # wait for the lock instead of failing with "database is locked".
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
        },
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

STATIC_URL = "/static/"

# Not needed at all: with no CHANNEL_LAYERS, shmchannels uses its shared-memory layer
# with defaults. Spelled out to show the Channels 1.x shape; "asgi_ipc.IPCChannelLayer"
# (the 1.x single-host layer) maps to shmlayer.ShmChannelLayer.
_LAYER_CONFIG = {}
if os.environ.get("SHMCHANNELS_SEGMENT"):
    _LAYER_CONFIG["name"] = os.environ["SHMCHANNELS_SEGMENT"]

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "asgi_ipc.IPCChannelLayer",
        "ROUTING": "chatsite.routing.channel_routing",
        "CONFIG": _LAYER_CONFIG,
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"chat": {"handlers": ["console"], "level": "INFO"}},
}
