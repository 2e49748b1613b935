"""Fixtures shared by the test modules: the loopback ADB device and Google's adb beside it."""

from tests.loopback_adb.fixtures import (  # noqa: F401
    adb_home, adb_key, google_adb, loopback_device, loopback_factory, served_loopback)
