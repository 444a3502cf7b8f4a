"""Peer benchmark site: the same view and consumers on Channels 4 + channels_redis."""
import os

SECRET_KEY = "bench-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["daphne", "channels"]
MIDDLEWARE = []
ROOT_URLCONF = "bench.sites.peer_site.urls"
DATABASES = {}
USE_TZ = True
ASGI_APPLICATION = "bench.sites.peer_site.asgi.application"
WSGI_APPLICATION = "bench.sites.peer_site.wsgi.application"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")]},
    },
}
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
