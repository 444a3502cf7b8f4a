"""Suite-wide setup: Django-using tests share one small settings module."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.djangoproject.settings")


# --- a private redis-server for the Redis layer's tests (session-wide) -------------------
import contextlib  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

# One starter for tests and benchmarks (bench/redis_server.py).
from bench import redis_server as _redis  # noqa: E402
from bench.redis_server import RedisServer, RedisServerError  # noqa: E402


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on 127.0.0.1 (no persistence), stopped by pid at the end.

    Never uses a Redis someone else started; `make install` provides /usr/bin/redis-server.
    A missing or failing redis-server fails the tests that need it with the reason, no traceback.
    """
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(_redis.redis_server())
        except RedisServerError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield server
