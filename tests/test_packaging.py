"""Every package of rerank/ ships: the wheel's package list names each one."""

import pytest

from conftest import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(path.parent.relative_to(REPO).parts) for path in (REPO / "rerank").rglob("__init__.py")}
    assert found <= listed, f"not in pyproject.toml's packages: {sorted(found - listed)}"
