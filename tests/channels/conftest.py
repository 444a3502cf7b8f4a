"""Fixtures of the channels tests: Django set up, a test database, fresh layers."""

from __future__ import annotations

import django
import pytest

django.setup()


@pytest.fixture(scope="session")
def db():
    """A migrated test database (SQLite in memory) for sessions, users and ChatMessage.

    Created once per test session; if another package's fixture already switched the
    connection to a test database, that one is reused.
    """
    from django.db import connection

    if connection.settings_dict["NAME"].startswith(("file:memorydb", ":memory:")):
        yield connection
        return
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield connection
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
