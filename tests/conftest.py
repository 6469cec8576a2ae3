"""Shared fixtures: the data folder beside the project, and running the real CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests judge correctness, never speed: a loaded CI machine must not fail them on time.
settings.register_profile("rerank", deadline=None)
settings.load_profile("rerank")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def data_dir(name: str) -> Path:
    """A collection folder of ../shared/data, or skip the test when it is absent."""
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} not found (the evaluation data lives beside the project)")
    return path


def run_cli(*args, env=None, timeout=600) -> subprocess.CompletedProcess:
    """Run ``python -m rerank ARGS`` as a user would, capturing its output."""
    environment = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key", **(env or {})}
    return subprocess.run([sys.executable, "-m", "rerank", *map(str, args)], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def read_summary(path: Path) -> dict:
    """The JSON summary a run wrote with --summary-json."""
    return json.loads(Path(path).read_text())


@pytest.fixture
def dl19():
    return data_dir("dl19")
