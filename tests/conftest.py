"""Fixtures shared by the test modules: the loopback ADB device, Google's adb beside it, loopback HTTP,
a throwaway PostgreSQL server."""

from tests.loopback_adb.fixtures import (  # noqa: F401
    adb_home, adb_key, google_adb, loopback_device, loopback_factory, served_loopback)
from tests.history_support import db_url, postgres_server  # noqa: F401
from tests.loopback_http import loopback_http  # noqa: F401
