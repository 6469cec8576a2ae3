"""``python -m rerank`` runs the ``rerank`` command."""

import sys

from .cli import main

sys.exit(main())
