"""Fixtures shared by the test modules: the loopback ADB device, Google's adb beside it, loopback HTTP,
a throwaway PostgreSQL server, two small models."""

import pytest

from tests.loopback_adb.fixtures import (  # noqa: F401
    adb_home, adb_key, google_adb, loopback_device, loopback_factory, served_loopback)
from tests.history_support import db_url, postgres_server  # noqa: F401
from tests.loopback_http import loopback_http  # noqa: F401


@pytest.fixture(scope="session")
def small_and_big(tmp_path_factory):
    """A tiny model and one with ~4.9x its Mult-Adds (measured ~2.5x slower on one x86 core)."""
    from export.pipeline import ExportRequest, export
    from export.quantization import Quant
    from mobilenets_tf import configure

    out = tmp_path_factory.mktemp("ab_models")
    paths = []
    for alpha, resolution in ((0.35, 64), (1.0, 96)):
        record = export(ExportRequest(configure("v3-small", alpha, resolution), Quant.FP32, calib_samples=4,
                                      verify=False), out)
        paths.append(out / record["file"])
    return paths
