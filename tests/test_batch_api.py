"""The judges' server's OpenAI Batch API (rerank.testing.batches), driven by the real openai SDK."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import openai
import pytest
from openai.types.chat import ChatCompletion

from rerank.testing import start_process, start_server
from rerank.testing.batch_http import read_multipart
from rerank.testing.batches import BatchOptions, read_input

ENDPOINT = "/v1/chat/completions"
ENDED = ("batches_completed", "batches_failed", "batches_cancelled", "batches_expired")


def client_for(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10)


def body(number: int, passages: int = 3, **extra) -> dict:
    lines = "\n".join(f"[{i}] passage {number}-{i}" for i in range(1, passages + 1))
    return {"model": "gpt-test", "messages": [{"role": "user", "content": f"Rank these.\n{lines}"}], **extra}


def jsonl(requests: dict[str, dict]) -> bytes:
    return "".join(json.dumps({"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": request}) + "\n"
                   for custom_id, request in requests.items()).encode("utf-8")


def submit(client: openai.OpenAI, requests: dict[str, dict], **metadata: str):
    uploaded = client.files.create(file=("requests.jsonl", jsonl(requests)), purpose="batch")
    return client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h",
                                 metadata=metadata or None)


def ended(server, count: int = 1) -> None:
    """Wait until ``count`` batches have ended, whatever their end."""
    server.wait_for(lambda stats: sum(stats[name] for name in ENDED) >= count)


def lines_of(client: openai.OpenAI, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_a_batch_answers_as_the_online_endpoint(dl19):
    """Real DL19 windows, asked online and in a batch (uploaded and polled with AsyncOpenAI)."""
    entries = json.loads((dl19 / "bm25_top100.json").read_text())[:6]
    requests = {}
    for number, entry in enumerate(entries):
        hits = entry["hits"][:20]
        passages = "\n".join(f"[{i}] {' '.join(hit['content'].split()[:60])}" for i, hit in enumerate(hits, 1))
        prompt = (f"Rank the {len(hits)} passages by their relevance to the query: {entry['query']}.\n\n"
                  f"{passages}\n\nSearch Query: {entry['query']}.\nAnswer in the format [] > [].")
        extra = {"logprobs": True, "top_logprobs": 5} if number % 2 else {"max_tokens": 8 if number == 4 else 200}
        requests[f"q{entry['hits'][0]['qid']}"] = {
            "model": "gpt-test", "messages": [{"role": "user", "content": prompt}], "temperature": 0, **extra}

    async def batch_answers(server) -> tuple[dict, list[str]]:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10)
        uploaded = await client.files.create(file=("dl19.jsonl", jsonl(requests)), purpose="batch")
        assert uploaded.purpose == "batch" and uploaded.bytes == len(jsonl(requests))
        batch = await client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h")
        statuses = [batch.status]
        await asyncio.to_thread(ended, server)
        batch = await client.batches.retrieve(batch.id)
        statuses.append(batch.status)
        assert batch.status == "completed" and batch.error_file_id is None
        assert batch.request_counts.total == batch.request_counts.completed == len(requests)
        output = (await client.files.content(batch.output_file_id)).text.splitlines()
        await client.close()
        return {line["custom_id"]: line for line in map(json.loads, output)}, statuses

    with start_server("oracle", data_dir=dl19) as server:
        online = client_for(server)
        expected = {custom_id: online.chat.completions.create(**request).model_dump()
                    for custom_id, request in requests.items()}
        answers, statuses = asyncio.run(batch_answers(server))
        stats = server.stats()
    assert statuses == ["validating", "completed"]
    assert set(answers) == set(requests)
    for custom_id, line in answers.items():
        assert line["error"] is None and line["response"]["status_code"] == 200
        assert line["id"].startswith("batch_req_") and line["response"]["request_id"]
        got, want = ChatCompletion.model_validate(line["response"]["body"]).model_dump(), expected[custom_id]
        for key in ("choices", "usage", "model", "object"):
            assert got[key] == want[key], (custom_id, key)
    assert any(answer["choices"][0]["finish_reason"] == "length" for answer in expected.values())
    assert any(answer["choices"][0]["logprobs"] for answer in expected.values())
    assert stats["unidentified_queries"] == stats["unmatched_passages"] == 0
    assert stats["completions"] == len(requests)            # the online ones only
    assert stats["batch_answers"] == stats["batch_lines"] == len(requests)
    assert stats["batch_prompt_tokens"] == stats["prompt_tokens"]
    assert stats["custom_id_submissions"] == stats["custom_id_answers"] == dict.fromkeys(requests, 1)


def test_objects_follow_the_sdk_types_and_lines_come_out_of_order():
    requests = {f"line-{i:03d}": body(i) for i in range(60)}
    with start_server("reverse") as server:
        client = client_for(server)
        batch = submit(client, requests, run="r1", round="0")
        ended(server)
        batch = client.batches.retrieve(batch.id)
        assert batch.status == "completed" and batch.metadata == {"run": "r1", "round": "0"}
        assert batch.endpoint == ENDPOINT and batch.completion_window == "24h" and batch.model == "gpt-test"
        assert batch.in_progress_at is not None and batch.finalizing_at is not None
        assert batch.completed_at is not None and batch.expires_at == batch.created_at + 24 * 3600
        assert batch.usage.input_tokens == server.stats()["batch_prompt_tokens"]
        output = lines_of(client, batch.output_file_id)
        ids = [line["custom_id"] for line in output]
        assert sorted(ids) == list(requests) and ids != list(requests)
        assert all(line["response"]["body"]["choices"][0]["message"]["content"] == "[3] > [2] > [1]"
                   for line in output)
        output_file = client.files.retrieve(batch.output_file_id)
        assert output_file.purpose == "batch_output" and output_file.filename.endswith(".jsonl")
        assert {f.id for f in client.files.list(purpose="batch_output")} == {batch.output_file_id}
        # the same order every time the file is read
        assert [line["custom_id"] for line in lines_of(client, batch.output_file_id)] == ids
        assert server.log()[0]["batch_id"] == batch.id and server.log()[0]["custom_id"] in requests


def test_fail_rate_fails_lines_deterministically_in_both_forms():
    requests = {f"c{i}": body(i) for i in range(200)}
    outcomes = []
    for _ in range(2):
        with start_server("identity", batch_fail_rate=0.3, seed=7) as server:
            client = client_for(server)
            batch = submit(client, requests)
            ended(server)
            batch = client.batches.retrieve(batch.id)
            failed = lines_of(client, batch.error_file_id)
            answered = lines_of(client, batch.output_file_id)
            outcomes.append(sorted(line["custom_id"] for line in failed))
            stats = server.stats()
        assert batch.status == "completed"
        assert batch.request_counts.failed == len(failed) and batch.request_counts.completed == len(answered)
        assert 30 < len(failed) < 90
        assert sorted(line["custom_id"] for line in failed + answered) == sorted(requests)
        http = [line for line in failed if line["response"] is not None]
        other = [line for line in failed if line["response"] is None]
        assert http and other
        assert all(line["response"]["status_code"] == 500 and line["error"] is None
                   and line["response"]["body"]["error"]["type"] == "server_error" for line in http)
        assert all(line["error"]["code"] == "server_error" and line["error"]["message"] for line in other)
        assert stats["batch_errors"] == len(failed) and stats["batch_answers"] == len(answered)
        assert stats["custom_id_failures"] == dict.fromkeys(outcomes[-1], 1)
    assert outcomes[0] == outcomes[1]


def test_failed_lines_resubmitted_draw_anew_and_count_no_duplicate():
    requests = {f"c{i}": body(i) for i in range(100)}
    with start_server("identity", batch_fail_rate=0.5, seed=1) as server:
        client = client_for(server)
        pending, rounds = dict(requests), 0
        while pending:
            batch = submit(client, pending)
            rounds += 1
            ended(server, rounds)
            batch = client.batches.retrieve(batch.id)
            pending = {line["custom_id"]: requests[line["custom_id"]]
                       for line in lines_of(client, batch.error_file_id)}
            assert rounds < 20
        stats = server.stats()
        assert rounds > 1
        assert stats["batch_duplicates"] == 0
        assert stats["custom_id_answers"] == dict.fromkeys(requests, 1)
        assert all(stats["custom_id_submissions"][c] == stats["custom_id_failures"].get(c, 0) + 1 for c in requests)
        # an answered line submitted again is a duplicate, whatever its batch's outcome
        submit(client, {"c0": requests["c0"], "new": body(1000)})
        ended(server, rounds + 1)
        assert server.stats()["batch_duplicates"] == 1


def test_a_line_submitted_while_in_another_running_batch_is_a_duplicate():
    with start_server("identity", batch_delay=60) as server:
        client = client_for(server)
        first = submit(client, {"a": body(1), "b": body(2)})
        server.wait_for(lambda stats: stats["batch_lines"] == 2)
        second = submit(client, {"b": body(2), "c": body(3)})
        stats = server.wait_for(lambda stats: stats["batch_lines"] == 4)
        assert stats["batch_duplicates"] == 1 and stats["custom_id_submissions"] == {"a": 1, "b": 2, "c": 1}
        for batch in (first, second):
            client.batches.cancel(batch.id)
        ended(server, 2)


def test_cancel_keeps_the_finished_lines():
    requests = {f"c{i}": body(i) for i in range(600)}
    with start_server("identity", batch_delay=120) as server:   # a line every 0.2 s
        client = client_for(server)
        batch = submit(client, requests)
        server.wait_for(lambda stats: stats["batch_answers"] >= 2)
        assert client.batches.retrieve(batch.id).status == "in_progress"
        cancelling = client.batches.cancel(batch.id)
        assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at is not None
        ended(server)
        batch = client.batches.retrieve(batch.id)
        assert batch.status == "cancelled" and batch.cancelled_at is not None
        answered, failed = lines_of(client, batch.output_file_id), lines_of(client, batch.error_file_id)
        assert len(answered) >= 2 and len(answered) + len(failed) == 600
        assert batch.request_counts.completed == len(answered) and batch.request_counts.failed == len(failed)
        assert all(line["response"] is None and line["error"]["code"] == "batch_cancelled" for line in failed)
        assert server.stats()["batches_cancelled"] == 1
        assert client.batches.cancel(batch.id).status == "cancelled"      # cancelling twice is harmless


def test_expired_batches_keep_the_finished_lines():
    requests = {f"c{i}": body(i) for i in range(9)}
    with start_server("identity", batch_expire=1) as server:
        client = client_for(server)
        first = submit(client, requests)
        ended(server)
        first = client.batches.retrieve(first.id)
        assert first.status == "expired" and first.expired_at is not None
        answered, failed = lines_of(client, first.output_file_id), lines_of(client, first.error_file_id)
        assert len(answered) == 4 and len(failed) == 5
        assert all(line["response"] is None and line["error"]["code"] == "batch_expired" for line in failed)
        assert first.request_counts.model_dump() == {"total": 9, "completed": 4, "failed": 5}
        second = submit(client, {line["custom_id"]: requests[line["custom_id"]] for line in failed})
        ended(server, 2)
        second = client.batches.retrieve(second.id)
        assert second.status == "completed" and second.request_counts.completed == 5
        stats = server.stats()
        assert stats["batches_expired"] == 1 and stats["batch_duplicates"] == 0
        assert stats["custom_id_answers"] == dict.fromkeys(requests, 1)


def test_a_bad_input_file_fails_the_batch_with_its_errors():
    lines = [json.dumps({"custom_id": "a", "method": "POST", "url": ENDPOINT, "body": body(1)}),
             "{not json",
             json.dumps({"custom_id": "a", "method": "POST", "url": ENDPOINT, "body": body(2)}),
             json.dumps({"custom_id": "b", "method": "POST", "url": "/v1/embeddings", "body": body(3)}),
             json.dumps({"method": "POST", "url": ENDPOINT, "body": body(4)})]
    with start_server("identity") as server:
        client = client_for(server)
        uploaded = client.files.create(file=("bad.jsonl", "\n".join(lines).encode()), purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h")
        ended(server)
        batch = client.batches.retrieve(batch.id)
        assert batch.status == "failed" and batch.failed_at is not None and batch.output_file_id is None
        assert [(e.line, e.code) for e in batch.errors.data] == [
            (2, "invalid_json_line"), (3, "duplicate_custom_id"), (4, "invalid_url"), (5, "missing_required_parameter")]
        assert server.stats()["batch_lines"] == 0 and server.stats()["batches_failed"] == 1
        empty = client.files.create(file=("empty.jsonl", b"\n"), purpose="batch")
        batch = client.batches.create(input_file_id=empty.id, endpoint=ENDPOINT, completion_window="24h")
        ended(server, 2)
        assert client.batches.retrieve(batch.id).errors.data[0].code == "empty_file"


def test_a_request_the_endpoint_refuses_is_an_error_line():
    with start_server("identity") as server:
        client = client_for(server)
        batch = submit(client, {"good": body(1), "bad": {"model": "gpt-test", "messages": []}})
        ended(server)
        batch = client.batches.retrieve(batch.id)
        assert batch.status == "completed" and batch.request_counts.model_dump() == {
            "total": 2, "completed": 1, "failed": 1}
        [failed] = lines_of(client, batch.error_file_id)
        assert failed["custom_id"] == "bad" and failed["error"] is None
        assert failed["response"]["status_code"] == 400
        assert failed["response"]["body"]["error"]["type"] == "invalid_request_error"


def test_list_pages_newest_first_with_metadata():
    with start_server("identity") as server:
        client = client_for(server)
        created = [submit(client, {"a": body(i)}, index=str(i)).id for i in range(5)]
        ended(server, 5)
        page = client.batches.list(limit=2)
        assert [b.id for b in page.data] == created[::-1][:2] and page.has_more
        listed = list(client.batches.list(limit=2))     # the SDK follows the cursor
        assert [b.id for b in listed] == created[::-1]
        assert [b.metadata["index"] for b in listed] == ["4", "3", "2", "1", "0"]


def test_mistakes_get_openai_errors():
    with start_server("identity") as server:
        client = client_for(server)
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_nope")
        with pytest.raises(openai.NotFoundError):
            client.batches.cancel("batch_nope")
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve("file-nope")
        with pytest.raises(openai.NotFoundError):
            client.batches.create(input_file_id="file-nope", endpoint=ENDPOINT, completion_window="24h")
        with pytest.raises(openai.BadRequestError, match="jsonl"):
            client.files.create(file=("requests.txt", jsonl({"a": body(1)})), purpose="batch")
        uploaded = client.files.create(file=("requests.jsonl", jsonl({"a": body(1)})), purpose="batch")
        with pytest.raises(openai.BadRequestError):
            client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
        with pytest.raises(openai.BadRequestError):
            client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="1h")
        other = client.files.create(file=("notes.jsonl", b"{}"), purpose="user_data")
        with pytest.raises(openai.BadRequestError, match="purpose"):
            client.batches.create(input_file_id=other.id, endpoint=ENDPOINT, completion_window="24h")
        assert client.files.content(uploaded.id).content == jsonl({"a": body(1)})
        deleted = client.files.delete(uploaded.id)
        assert deleted.deleted and deleted.id == uploaded.id
        with pytest.raises(openai.NotFoundError):
            client.files.content(uploaded.id)
        assert server.stats()["files_uploaded"] == 2 and server.stats()["batches_created"] == 0
        done = submit(client, {"a": body(1)})
        ended(server)
        with pytest.raises(openai.ConflictError, match="completed"):
            client.batches.cancel(done.id)


def test_stop_ends_a_running_batch_at_once():
    server = start_server("identity", batch_delay=600)
    client = client_for(server)
    submit(client, {"a": body(1), "b": body(2)})
    server.wait_for(lambda stats: stats["batch_lines"] == 2)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5


def test_script_mode_batch_options():
    process, base_url = start_process("--judge", "identity", "--batch-fail-rate", "1", "--batch-delay", "0")
    try:
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=10)
        batch = submit(client, {"a": body(1), "b": body(2)})
        deadline = time.monotonic() + 10
        while batch.status != "completed" and time.monotonic() < deadline:   # as a driver polls
            batch = client.batches.retrieve(batch.id)
        assert batch.status == "completed" and batch.request_counts.failed == 2
        root = base_url.removesuffix("/v1")
        stats = json.loads(urllib.request.urlopen(f"{root}/stats", timeout=5).read())
        assert stats["custom_id_failures"] == {"a": 1, "b": 1} and stats["batch_errors"] == 2
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_read_input_and_multipart_helpers():
    lines, errors = read_input(jsonl({"a": body(1)}) + b"\n\n")
    assert [line["custom_id"] for line in lines] == ["a"] and errors == []
    content = b"line one\r\n\xff binary\r\n"
    multipart = (b"--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
                 b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n"
                 b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n--XyZ--\r\n")
    fields, files = read_multipart("multipart/form-data; boundary=XyZ", multipart)
    assert fields == {"purpose": "batch"} and files == {"file": ("a.jsonl", content)}
    with pytest.raises(ValueError):
        BatchOptions(fail_rate=1.5)
