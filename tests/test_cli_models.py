"""`mnbench models` / `mnbench info` and the CLI's error boundary."""

import json
import subprocess
import sys

import pytest

from mnbench import __version__
from tests.helpers import run_cli as run


def test_version():
    code, out, _ = run("--version")
    assert code == 0 and __version__ in out


def test_models_json_lists_every_version_and_canonical_alpha():
    code, out, _ = run("models", "--json")
    rows = json.loads(out)
    assert code == 0
    assert {(r["version"], r["alpha"]) for r in rows} >= {("v1", 1.0), ("v2", 1.4), ("v3-large", 0.75),
                                                          ("v3-small", 1.0)}
    v1 = next(r for r in rows if r["version"] == "v1" and r["alpha"] == 1.0)
    assert (v1["params"], v1["macs"]) == (4_221_032, 568_740_352)


def test_info_json_has_layers_and_totals():
    code, out, _ = run("info", "--version", "v1", "--set", "separable=false", "--json")
    data = json.loads(out)
    assert code == 0
    assert (data["version"], data["alpha"], data["resolution"]) == ("v1", 1.0, 224)
    assert data["knobs"]["separable"] is False
    assert data["params"] == sum(layer["params"] for layer in data["layers"]) == 29_288_104
    assert data["macs"] == sum(layer["macs"] for layer in data["layers"])


def test_info_table_is_aligned_and_totals_printed():
    code, out, _ = run("info", "--version", "v3-small", "--alpha", "0.75", "--resolution", "160")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("layer") and "block01_se_reduce" in out
    assert len({len(line) for line in lines[2:12]}) == 1           # aligned columns
    assert "params" in lines[-1] and "Mult-Adds" in lines[-1]


@pytest.mark.parametrize("args, message", [
    (["info", "--version", "v9"], "'v9' is not one of"),
    (["info", "--version", "v1", "--alpha", "0"], "alpha must be in (0, 2]"),
    (["info", "--version", "v1", "--alpha", "2.5"], "alpha must be in (0, 2]"),
    (["info", "--version", "v2", "--resolution", "31"], "resolution must be an integer >= 32"),
    (["info", "--version", "v1", "--set", "activation=relu"],
     "unknown knob 'activation' for v1; valid: separable, shallow"),
    (["info", "--version", "v3-large", "--set", "se"], "expected KEY=VALUE"),
    (["info", "--version", "v3-large", "--set", "stem_filters=8"], "valid: 16, 32"),
    (["info", "--alpha", "1"], "Missing option '--version'"),
    (["infox"], "No such command"),
])
def test_bad_input_is_one_line_and_non_zero(args, message):
    code, out, err = run(*args)
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith("mnbench: error: ") and message in err


def test_models_does_not_import_tensorflow():
    code = ("import sys; from mnbench.cli import main; main(['models']); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported TF'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
