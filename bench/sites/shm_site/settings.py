"""shmchannels benchmark site: the plain view plus Channels 1.x echo and broadcast consumers."""
import os

SECRET_KEY = "bench-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
MIDDLEWARE = []
ROOT_URLCONF = "bench.sites.shm_site.urls"
DATABASES = {}
USE_TZ = True
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "shmlayer.ShmChannelLayer",
        "ROUTING": "bench.sites.shm_site.routing.channel_routing",
        "CONFIG": {"name": os.environ.get("BENCH_SEGMENT", "shmchannels-bench")},
    },
}
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
