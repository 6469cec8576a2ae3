"""``rerank demo``: BM25 then the embedded model on a bundled sample."""

from __future__ import annotations

import argparse
import asyncio


def add_demo_command(commands) -> None:
    """Add ``rerank demo``."""
    demo = commands.add_parser(
        "demo", help="BM25 then the embedded model on a bundled sample; no network, no arguments",
        description="Retrieve with BM25 from a small bundled corpus, rerank with the embedded llama.cpp "
                    "model and with the perfect judge from the sample's qrels (the upper bound, no model), "
                    "and print the three top 5s side by side (with how each document moved) and nDCG@10.")
    demo.add_argument("--model", help="GGUF file (default: the bundled SmolLM2-135M-Instruct)")
    demo.set_defaults(handler=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    """``rerank demo``."""
    from ..demo import run_demo

    return asyncio.run(run_demo(model=args.model))
