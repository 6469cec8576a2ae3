"""`rerank serve --mcp`: the rerank tool over the Model Context Protocol on stdio, as an agent
reaches it (the mcp package's own client launching the server), in front of the oracle judge on DL19."""

import json
import os
import queue
import subprocess
import sys
import threading

import pytest

from conftest import REPO, data_dir
from llm_server import start_server
from serve_process import dl19_cases

pytest.importorskip("mcp.server.mcpserver", reason="rerank serve --mcp needs the mcp package, version 2")

pytestmark = pytest.mark.integration

#: Seconds an answer of the server may take (its start-up included) before the test fails.
ANSWER_TIMEOUT = 60


@pytest.fixture(scope="module")
def dl19_top20():
    """A DL19 query whose judged-best passage is not BM25's first: the query, its BM25 top 20
    texts and their grades."""
    case = dl19_cases(data_dir("dl19"))[0]
    return case.query, case.documents, case.grades


@pytest.fixture(scope="module")
def judge():
    with start_server("oracle", data_dir=data_dir("dl19")) as server:
        yield server.base_url


def serve_args(judge_url: str) -> list[str]:
    return ["-m", "rerank", "serve", "--mcp", "--model", "judge", "--base-url", judge_url, "--strategy", "full",
            "--serve-model", "full=full", "--serve-model", "sliding=sliding", "--no-cache"]


def serve_env() -> dict:
    return {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}


async def test_the_rerank_tool_ranks_the_judged_best_passage_first(judge, dl19_top20):
    from mcp import Client, StdioServerParameters

    query, documents, grades = dl19_top20
    server = StdioServerParameters(command=sys.executable, args=serve_args(judge), env=serve_env(), cwd=str(REPO))
    async with Client(server, read_timeout_seconds=ANSWER_TIMEOUT) as client:
        tools = (await client.list_tools()).tools
        assert [tool.name for tool in tools] == ["rerank"]
        schema = tools[0].input_schema
        assert set(schema["properties"]) == {"query", "documents", "top_n", "model", "max_tokens_per_doc"}
        assert schema["required"] == ["query", "documents"]
        assert schema["properties"]["documents"] == {"items": {"type": "string"}, "title": "Documents",
                                                     "type": "array"}
        assert {"type": "integer"} in schema["properties"]["top_n"]["anyOf"]

        result = await client.call_tool("rerank", {"query": query, "documents": documents, "top_n": 5})
        assert not result.is_error
        body = result.structured_content
        assert body == json.loads(result.content[0].text)
        results = body["results"]
        assert len(results) == 5
        assert grades[results[0]["index"]] == max(grades) > grades[0]
        assert [grades[r["index"]] for r in results] == sorted(grades, reverse=True)[:5]
        scores = [r["relevance_score"] for r in results]
        assert scores == sorted(scores, reverse=True) and len(set(scores)) == 5
        assert all(r["document"] == {"text": documents[r["index"]]} for r in results)
        assert body["meta"]["billed_units"]["input_tokens"] > 0

        # Every served model answers, and max_tokens_per_doc reaches the ranking.
        result = await client.call_tool("rerank", {"query": query, "documents": documents[:6], "model": "sliding",
                                                   "max_tokens_per_doc": 8})
        assert not result.is_error
        assert sorted(r["index"] for r in result.structured_content["results"]) == list(range(6))


#: Bad arguments of the rerank tool, and what its error says.
BAD_CALLS = [
    ({"documents": []}, "documents must not be empty"),
    ({"model": "gpt-unknown"}, "model 'gpt-unknown' not found"),
    ({"top_n": 0}, "top_n must be a positive integer"),
    ({"query": "   "}, "query must not be empty"),
    ({"max_tokens_per_doc": 10**6}, "max_tokens_per_doc must be at most"),
    ({"documents": "one string"}, "documents"),  # refused by the tool's input schema
]


async def test_a_bad_call_is_a_tool_error_with_the_message_and_the_server_goes_on(judge, dl19_top20):
    from mcp import Client, StdioServerParameters

    query, documents, grades = dl19_top20
    server = StdioServerParameters(command=sys.executable, args=serve_args(judge), env=serve_env(), cwd=str(REPO))
    async with Client(server, read_timeout_seconds=ANSWER_TIMEOUT) as client:
        for arguments, message in BAD_CALLS:
            result = await client.call_tool("rerank", {"query": query, "documents": documents[:3], **arguments})
            assert result.is_error, arguments
            assert message in result.content[0].text
        # The same session answers the next call.
        result = await client.call_tool("rerank", {"query": query, "documents": documents, "top_n": 1})
        assert not result.is_error
        assert grades[result.structured_content["results"][0]["index"]] == max(grades)


def test_stdout_carries_the_protocol_alone(judge):
    """Every line the server writes on stdout, from start-up to its exit when stdin closes, is a
    JSON-RPC message (a print or a log line there would break every MCP client)."""
    process = subprocess.Popen([sys.executable, *serve_args(judge)], cwd=REPO, env=serve_env(),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout] and None, daemon=True).start()
    stderr: list = []
    threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True).start()

    def ask(message: dict) -> dict:
        process.stdin.write(json.dumps(message) + "\n")
        process.stdin.flush()
        answer = json.loads(lines.get(timeout=ANSWER_TIMEOUT))
        assert answer["jsonrpc"] == "2.0" and answer["id"] == message["id"], answer
        return answer

    try:
        started = ask({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "tests", "version": "0"}}})
        assert started["result"]["serverInfo"]["name"] == "rerank"
        process.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
        assert [tool["name"] for tool in ask({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})["result"]["tools"]] \
            == ["rerank"]
        answer = ask({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "rerank", "arguments": {"query": "what is a flea", "documents": ["cats", "a flea is an insect"]}}})
        assert sorted(r["index"] for r in answer["result"]["structuredContent"]["results"]) == [0, 1]
        process.stdin.close()  # the client leaves: the server stops
        assert process.wait(timeout=ANSWER_TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert rest == [], f"stdout carried more than the protocol: {rest!r}"
    assert "Traceback" not in "".join(stderr)


def test_an_unreachable_llm_stops_the_start_with_one_line():
    result = subprocess.run([sys.executable, *serve_args("http://127.0.0.1:9/v1")], cwd=REPO, env=serve_env(),
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=ANSWER_TIMEOUT)
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0 and "cannot connect" in result.stderr
