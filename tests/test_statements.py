"""Statements in docstrings and README that say what the code does, checked against the code."""

import ast
import importlib
import re
from pathlib import Path

import click

from device_bench import android_run
from device_bench.android_run import judge_run

ROOT = Path(__file__).resolve().parents[1]
SHARED_LOGS = ROOT.parent / "shared" / "fixtures" / "benchmark_logs"


def _function(path: Path, name: str) -> ast.FunctionDef:
    return next(node for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.FunctionDef) and node.name == name)


def test_builder_quotes_the_constant_the_decomposed_hswish_layer_multiplies_by():
    call = _function(ROOT / "mobilenets_tf" / "blocks.py", "call")
    constants = [node.value for node in ast.walk(call) if isinstance(node, ast.Constant)
                 and isinstance(node.value, float) and 0.16 < node.value < 0.17]
    assert constants == [0.16666666] and constants[0] != 1 / 6
    doc = ast.get_docstring(_function(ROOT / "mobilenets_tf" / "builder.py", "build_from_config"))
    assert f"relu6(x + 3) * {constants[0]!r}" in doc and "/ 6" not in doc


def test_android_run_says_what_becomes_of_a_log_without_a_median():
    log = (SHARED_LOGS / "05_tf2.0dev_zedboard-armv7_2threads_opprof_nostats.txt").read_text()
    status, error, parsed, _ = judge_run(log, 0, "cpu")
    assert (status, error, parsed["median_us"]) == ("ok", None, None) and parsed["avg_us"] > 0
    doc = " ".join(android_run.__doc__.split())
    assert "recorded as failed" not in doc
    assert "builds that print no ``median=`` (before percentiles, e.g. TF 2.0) are ``ok`` rows" in doc


def test_the_command_line_honours_click_exit_codes_as_compare_says():
    from mnbench import cli

    compare = importlib.import_module("mnbench.commands.compare")   # the module, not the command it defines

    @click.command("exit-five")
    @click.pass_context
    def exit_five(ctx):
        ctx.exit(5)

    cli.cli.add_command(exit_five)
    try:
        assert cli.main(["exit-five"]) == 5
    finally:
        cli.cli.commands.pop("exit-five")
    assert "drops the exit code" not in " ".join(compare.__doc__.split())


def test_readme_layout_draws_every_package_and_the_import_rule():
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout"):]
    layout = layout[:layout.find("\n## ", 1)]
    folders = [path.parent.relative_to(ROOT) for path in sorted(ROOT.glob("*/__init__.py"))]
    folders += [path.parent.relative_to(ROOT) for path in sorted(ROOT.glob("mnbench/*/__init__.py"))]
    assert len(folders) >= 7
    assert [folder for folder in folders if f"{folder.name}/" not in layout] == []
    assert re.search(r"imports (run|go) one way", layout, re.IGNORECASE)
