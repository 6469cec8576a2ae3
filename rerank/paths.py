"""Where rerank keeps files between runs: the call cache and retrieval indexes."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/rerank``, ``~/.cache/rerank`` by default."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "rerank"


def default_cache_path() -> str:
    """The call cache: ``$RERANK_CACHE``, else ``calls.sqlite`` under :func:`cache_home`."""
    return os.environ.get("RERANK_CACHE") or str(cache_home() / "calls.sqlite")


def default_index_root() -> Path:
    """Retrieval indexes: ``$RERANK_INDEX_DIR``, else ``indexes/`` under :func:`cache_home`."""
    return Path(os.environ["RERANK_INDEX_DIR"]) if os.environ.get("RERANK_INDEX_DIR") else cache_home() / "indexes"
