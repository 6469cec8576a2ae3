"""A stand-in for the ``vllm`` executable's ``run-batch``: each request line of the input file
answered by a test judge, as the judges' server answers it, the output lines shuffled.

    python tests/fake_vllm.py run-batch -i IN.jsonl -o OUT.jsonl --model MODEL

``$FAKE_VLLM_DATA`` names the judge's data folder (the oracle judge); ``$FAKE_VLLM_LOG``, when
set, is a file that gets one line per run (the input file's name), so tests can count runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rerank.testing.completions import Responder  # noqa: E402
from rerank.testing.dataset import Dataset  # noqa: E402
from rerank.testing.judges import Judge  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vllm")
    commands = parser.add_subparsers(dest="command", required=True)
    run_batch = commands.add_parser("run-batch")
    run_batch.add_argument("-i", "--input-file", required=True)
    run_batch.add_argument("-o", "--output-file", required=True)
    run_batch.add_argument("--model", required=True)
    args = parser.parse_args(argv)
    responder = Responder(Judge("oracle", Dataset(os.environ["FAKE_VLLM_DATA"])))
    answers = []
    for raw in Path(args.input_file).read_bytes().splitlines():
        if not raw.strip():
            continue
        line = json.loads(raw)
        reply = responder.respond(line["body"])
        answers.append({"id": f"vllm-{uuid.uuid4().hex}", "custom_id": line["custom_id"],
                        "response": {"status_code": reply.status, "request_id": uuid.uuid4().hex,
                                     "body": reply.body},
                        "error": None})
    random.Random(args.input_file).shuffle(answers)
    Path(args.output_file).write_text("".join(json.dumps(answer) + "\n" for answer in answers))
    if os.environ.get("FAKE_VLLM_LOG"):
        with open(os.environ["FAKE_VLLM_LOG"], "a") as log:
            log.write(Path(args.input_file).name + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
