"""Fixtures shared by the test modules: the loopback ADB device and Google's adb beside it; PostgreSQL."""

from tests.loopback_adb.fixtures import (  # noqa: F401
    adb_home, adb_key, google_adb, loopback_device, loopback_factory, served_loopback)
from tests.history_support import db_url, postgres_server  # noqa: F401
