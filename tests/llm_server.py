"""The tests' name for :mod:`rerank.testing`: ``from llm_server import start_server``.

As a script it is ``python -m rerank.testing.server``.
"""

import sys

from rerank.testing import start_process, start_server
from rerank.testing.server import main

__all__ = ["start_process", "start_server"]

if __name__ == "__main__":
    sys.exit(main())
