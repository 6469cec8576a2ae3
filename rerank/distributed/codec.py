"""Requests, results and training examples as JSON text, the form they cross Ray in.

A Ray Dataset stores columns as Arrow arrays; nested objects there would be unified into Arrow
structs (an integer score beside a float becomes a float), so each row carries its request or
result as one JSON string instead, which comes back exactly as it went (Python writes the
shortest float that reads back the same), and the outputs are byte-identical to one process's.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from ..labels import TrainingExample
from ..types import CallRecord, Candidate, Query, Request, Result


def request_to_json(request: Request) -> str:
    """One request as JSON text.

    Parameters
    ----------
    request : Request

    Returns
    -------
    str
    """
    return json.dumps(asdict(request))


def request_from_json(text: str) -> Request:
    """The request :func:`request_to_json` wrote.

    Parameters
    ----------
    text : str

    Returns
    -------
    Request
    """
    data = json.loads(text)
    return Request(Query(**data["query"]), [Candidate(**c) for c in data["candidates"]])


def result_to_json(result: Result, example: TrainingExample | None = None) -> str:
    """One result (and its training example, for ``rerank labels``) as JSON text.

    Parameters
    ----------
    result : Result
    example : TrainingExample or None

    Returns
    -------
    str
    """
    data = asdict(result)
    if example is not None:
        data["example"] = example.as_dict()
    return json.dumps(data)


def result_from_json(text: str) -> tuple[Result, TrainingExample | None]:
    """The result (and training example, or None) :func:`result_to_json` wrote.

    Parameters
    ----------
    text : str

    Returns
    -------
    (Result, TrainingExample or None)
    """
    data = json.loads(text)
    example = data.pop("example", None)
    result = Result(query=Query(**data["query"]), candidates=[Candidate(**c) for c in data["candidates"]],
                    calls=[CallRecord(**call) for call in data["calls"]], rounds=data["rounds"])
    return result, None if example is None else TrainingExample(**example)
