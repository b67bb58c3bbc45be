"""Fixtures shared across test files: one real pipeline run on the tiny sample, reused by every test that needs it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hmrec.cli import app
from hmrec.sample.generate import generate


@dataclass(frozen=True)
class PipelineRun:
    root: Path
    workdir: Path
    printed: str  # the last line `hmrec pipeline` printed


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory) -> PipelineRun:
    """`hmrec pipeline --promote` once on the tiny sample, through the real CLI; treat its workdir as read-only."""
    root = tmp_path_factory.mktemp("pipeline")
    generate("tiny", seed=3, out=root / "raw")
    result = CliRunner().invoke(
        app, ["pipeline", "--raw", str(root / "raw"), "--workdir", str(root / "work"), "--promote"]
    )
    assert result.exit_code == 0, result.output
    return PipelineRun(root, root / "work", result.output.strip().splitlines()[-1])
