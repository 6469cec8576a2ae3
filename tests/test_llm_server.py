"""Tests of the judges' OpenAI-compatible server, rerank.testing (listwise prompts, faults)."""

from __future__ import annotations

import http.client
import json
import math
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from rerank import testing
from rerank.testing import start_server

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "dl19"
SYSTEM = ("You are RankGPT, an intelligent assistant that can rank passages based on their "
          "relevancy to the query.")
QUERY = "what is the airspeed of an unladen swallow"
PASSAGES = [
    "Swallows fly at about 11 metres per second.",
    "The European swallow is a migratory bird.",
    "Coconuts are not native to England.",
    "An unladen swallow's airspeed is a famous question from a film.",
    "Bridges of death are guarded by old men.",
]


def client_for(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10)


def single_message(query: str, passages: list[str]) -> list[dict]:
    """All passages in one user message, one per line."""
    lines = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, 1))
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": (
            f"I will provide you with {len(passages)} passages, each indicated by number "
            f"identifier []. Rank the passages based on their relevance to query: {query}.\n\n"
            f"{lines}\n\nSearch Query: {query}.\nRank the {len(passages)} passages above. "
            "The output format should be [] > [], e.g., [1] > [2].")},
    ]


def multi_turn(query: str, passages: list[str]) -> list[dict]:
    """The RankGPT conversation: one user message per passage."""
    n = len(passages)
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": (f"I will provide you with {n} passages, each indicated by "
                                     f"number identifier []. \nRank the passages based on their "
                                     f"relevance to query: {query}.")},
        {"role": "assistant", "content": "Okay, please provide the passages."},
    ]
    for i, passage in enumerate(passages, 1):
        messages.append({"role": "user", "content": f"[{i}] {passage}"})
        messages.append({"role": "assistant", "content": f"Received passage [{i}]."})
    messages.append({"role": "user", "content": (
        f"Search Query: {query}. \nRank the {n} passages above based on their relevance to the "
        "search query. The passages should be listed in descending order using identifiers. The "
        "most relevant passages should be listed first. The output format should be [] > [], "
        "e.g., [1] > [2]. Only response the ranking results, do not say any word or explain.")})
    return messages


def ids_of(answer: str) -> list[int]:
    return [int(x) for x in re.findall(r"\[(\d+)\]", answer)]


def ask(client: openai.OpenAI, messages: list[dict], **kwargs):
    return client.chat.completions.create(model="gpt-test", messages=messages, **kwargs)


def post(url: str, body: bytes, timeout: float = 10) -> tuple[int, dict, dict]:
    """(status, headers, json body) of a raw POST; HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def chat_body(messages: list[dict], **extra) -> bytes:
    return json.dumps({"model": "gpt-test", "messages": messages, **extra}).encode()


# ----------------------------------------------------------------------------------------------
# Simple judges
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build", [single_message, multi_turn])
def test_identity_and_reverse(build):
    messages = build(QUERY, PASSAGES)
    with start_server("identity") as server:
        answer = ask(client_for(server), messages).choices[0].message.content
    assert answer == "[1] > [2] > [3] > [4] > [5]"
    with start_server("reverse") as server:
        answer = ask(client_for(server), messages).choices[0].message.content
    assert answer == "[5] > [4] > [3] > [2] > [1]"


def test_response_shape_and_usage():
    messages = single_message(QUERY, PASSAGES)
    counter = testing.Tokens()
    with start_server("identity") as server:
        status, headers, body = post(server.base_url + "/chat/completions", chat_body(messages))
        response = ask(client_for(server), messages)   # parsed by the openai package
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert body["model"] == "gpt-test" and isinstance(body["created"], int)
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    expected_prompt = sum(counter.count(m["content"]) + 4 for m in messages) + 3
    usage = body["usage"]
    assert usage["prompt_tokens"] == expected_prompt
    assert usage["completion_tokens"] == counter.count(choice["message"]["content"])
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert response.usage.prompt_tokens == expected_prompt
    assert response.choices[0].message.content == "[1] > [2] > [3] > [4] > [5]"


def test_prompt_tokens_use_cl100k_when_available():
    counter = testing.Tokens()
    if counter.encoding is None:
        assert counter.count("abcdefgh") == 2
    else:
        assert counter.encoding.name == "cl100k_base"
        assert counter.count("hello world") == 2


def test_prompt_tokens_are_the_sum_of_the_messages_and_can_be_estimated():
    counter = testing.Tokens()
    messages = [{"role": "user", "content": text}
                for text in ("[1] first  ", "\n<|endoftext|> second.\n", "'s third", "")]
    framing = testing.TOKENS_PER_MESSAGE * len(messages) + testing.TOKENS_PER_REPLY
    assert counter.prompt(messages) == sum(counter.count(m["content"]) for m in messages) + framing
    estimate = testing.Tokens(estimate=True)
    assert estimate.encoding is None and estimate.count("abcdefgh") == 2


@pytest.mark.parametrize("build,unparseable", [
    ("numbers", r"\d"),
    # For letter prompts: no digit, no bracket and no capital letter to read as an identifier.
    ("letters", r"[\d\[\]A-Z]"),
])
def test_garbage_has_nothing_to_parse_and_varies(build, unparseable):
    messages = (single_message if build == "numbers" else letter_message)(QUERY, PASSAGES)
    with start_server("garbage", seed=3) as server:
        client = client_for(server)
        answers = [ask(client, messages).choices[0].message.content for _ in range(24)]
    assert all(not re.search(unparseable, a) for a in answers)
    assert len(set(answers)) >= 3


def test_max_tokens_cuts_the_answer():
    messages = single_message(QUERY, PASSAGES)
    with start_server("identity") as server:
        response = ask(client_for(server), messages, max_tokens=3)
        full = ask(client_for(server), messages, max_completion_tokens=200)
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens <= 3
    assert "[1] > [2] > [3] > [4] > [5]".startswith(response.choices[0].message.content)
    assert full.choices[0].finish_reason == "stop"


def test_passage_lines_only_at_line_start_and_first_occurrence_wins():
    messages = [{"role": "user", "content": (
        "Rank for query: x.\n[1] first\n[2] second, see [7] inside\n[1] repeated\n"
        "The output format is:\n[2] > [1]\n  [9] indented is not a passage")}]
    prompt = testing.read_prompt(messages)
    assert prompt.passages == {1: "first", 2: "second, see [7] inside"}


# ----------------------------------------------------------------------------------------------
# Errors, fault injection, stats
# ----------------------------------------------------------------------------------------------

def test_bad_requests_get_openai_errors():
    with start_server("identity") as server:
        url = server.base_url + "/chat/completions"
        for body in (b"{not json", b'{"model": "m"}', b'{"model": "m", "messages": []}', b"[1]"):
            status, _, error = post(url, body)
            assert status == 400
            assert set(error["error"]) == {"message", "type", "param", "code"}
            assert error["error"]["type"] == "invalid_request_error"
        with pytest.raises(openai.BadRequestError):
            client_for(server).chat.completions.create(model="m", messages=[])
        status, _, _ = post(server.root_url + "/v1/nowhere", b"{}")
        assert status == 404
        stats = server.stats()
    assert stats["requests"] == 5 and stats["bad_requests"] == 5 and stats["completions"] == 0


def test_models_endpoint():
    with start_server("identity") as server:
        models = client_for(server).models.list()
    assert [m.id for m in models.data] == ["test-judge"]


def test_fail_rate_one_fails_every_request_in_all_three_ways():
    messages = single_message(QUERY, PASSAGES)
    seen = set()
    with start_server("identity", fail_rate=1.0, seed=1) as server:
        client = client_for(server)
        for _ in range(30):
            try:
                ask(client, messages)
            except openai.RateLimitError as error:
                assert error.response.headers["retry-after"] == "0"
                assert error.body["code"] == "rate_limit_exceeded"
                seen.add("429")
            except openai.InternalServerError as error:
                assert error.status_code == 500
                seen.add("500")
            except openai.APIConnectionError:
                seen.add("drop")
            else:
                pytest.fail("a request succeeded with fail_rate=1.0")
        stats = server.stats()
    assert seen == {"429", "500", "drop"}
    assert stats["requests"] == 30 and stats["failures"] == 30 and stats["completions"] == 0
    assert sum(stats["failures_by_kind"].values()) == 30
    assert stats["prompt_tokens"] == 0


def test_fail_rate_one_with_raw_http():
    kinds = set()
    with start_server("identity", fail_rate=1.0, seed=2) as server:
        url = server.base_url + "/chat/completions"
        for _ in range(20):
            try:
                status, headers, body = post(url, chat_body(single_message(QUERY, PASSAGES)))
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError):
                kinds.add("drop")
                continue
            assert status in (429, 500) and "error" in body
            if status == 429:
                assert headers["Retry-After"] == "0"
            kinds.add(str(status))
        by_kind = server.stats()["failures_by_kind"]
    assert kinds == {"429", "500", "drop"}
    assert {k for k, v in by_kind.items() if v} == kinds


def test_failures_are_deterministic_per_seed():
    def outcomes(seed):
        result = []
        with start_server("identity", fail_rate=0.5, seed=seed) as server:
            client = client_for(server)
            for _ in range(16):
                try:
                    ask(client, [{"role": "user", "content": "[1] a"}])
                    result.append("ok")
                except openai.APIError as error:
                    result.append(type(error).__name__)
        return result
    first = outcomes(7)
    assert first == outcomes(7)
    assert "ok" in first and len(set(first)) > 1


def test_fail_rate_zero_never_fails_and_stats_count():
    messages = single_message(QUERY, PASSAGES)
    counter = testing.Tokens()
    per_request = sum(counter.count(m["content"]) + 4 for m in messages) + 3
    with start_server("identity") as server:
        client = client_for(server)
        for _ in range(40):
            assert ask(client, messages).choices[0].message.content.startswith("[1]")
        stats = server.stats()
        with urllib.request.urlopen(server.root_url + "/stats", timeout=5) as response:
            over_http = json.loads(response.read())
        post(server.root_url + "/stats/reset", b"")
        after_reset = server.stats()
        log = server.log()
    assert stats["requests"] == 40 and stats["completions"] == 40 and stats["failures"] == 0
    assert stats["prompt_tokens"] == 40 * per_request
    assert over_http["completions"] == 40 and over_http["prompt_tokens"] == 40 * per_request
    assert after_reset["requests"] == after_reset["completions"] == 0
    assert after_reset["prompt_tokens"] == 0 and log == []


def test_keep_alive_and_content_length():
    with start_server("identity") as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        sockets = []
        for _ in range(3):
            connection.request("POST", "/v1/chat/completions",
                               body=chat_body([{"role": "user", "content": "[1] a\n[2] b"}]),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
            assert response.status == 200 and response.version == 11
            assert int(response.getheader("Content-Length")) == len(data)
            assert json.loads(data)["choices"][0]["message"]["content"] == "[1] > [2]"
            sockets.append(connection.sock)
        connection.close()
    assert sockets[0] is not None and all(s is sockets[0] for s in sockets)  # one connection


def test_handles_64_concurrent_connections_with_delay():
    n, delay = 64, 0.5
    results: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)
    with start_server("reverse", delay=delay) as server:
        url = server.base_url + "/chat/completions"

        def worker():
            barrier.wait()
            status, _, body = post(url, chat_body([{"role": "user", "content": "[1] a\n[2] b"}]))
            with lock:
                results.append(status if body["choices"][0]["message"]["content"] == "[2] > [1]"
                               else -1)

        threads = [threading.Thread(target=worker) for _ in range(n)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=15)
        elapsed = time.monotonic() - start
        stats = server.stats()
    assert results == [200] * n
    assert elapsed < delay * 4          # served in parallel, not one after another
    assert stats["max_in_flight"] >= n // 2 and stats["completions"] == n


def test_stop_closes_the_port():
    server = start_server("identity")
    port = server.port
    server.stop()
    server.stop()   # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_script_mode_prints_ready_and_serves():
    process = subprocess.Popen([sys.executable, "-m", "rerank.testing.server", "--judge", "reverse", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        match = re.fullmatch(r"READY (http://127\.0\.0\.1:(\d+)/v1)", line)
        assert match, line
        client = openai.OpenAI(base_url=match.group(1), api_key="x", max_retries=0, timeout=10)
        answer = ask(client, [{"role": "user", "content": "[1] a\n[2] b\n[3] c"}])
        assert answer.choices[0].message.content == "[3] > [2] > [1]"
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_oracle_needs_data():
    with pytest.raises(ValueError):
        start_server("oracle")
    with pytest.raises(ValueError):
        start_server("nonsense")


# ----------------------------------------------------------------------------------------------
# Oracle and noisy judges on DL19
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dl19():
    if not (DATA_DIR / "bm25_top100.json").exists():
        pytest.skip(f"DL19 data not found at {DATA_DIR}")
    entries = json.loads((DATA_DIR / "bm25_top100.json").read_text())
    qrels: dict[str, dict[str, int]] = {}
    for path in DATA_DIR.glob("qrels*.txt"):
        for line in path.read_text().splitlines():
            qid, _, docid, grade = line.split()
            qrels.setdefault(qid, {})[docid] = int(grade)
    return entries, qrels


@pytest.fixture(scope="module")
def oracle_server(dl19):
    with start_server("oracle", data_dir=DATA_DIR) as server:
        yield server


def first_words(text: str, n: int = 100) -> str:
    return " ".join(text.split()[:n])


def effective_grades(entry: dict, qrels: dict, hits: list[dict]) -> list[int]:
    """Each hit's grade, as the oracle sees it: the max over the query's hits with its text."""
    judged = qrels[str(entry["hits"][0]["qid"])]
    best: dict[tuple, int] = {}
    for hit in entry["hits"]:
        key = tuple(testing.normalise(hit["content"]))
        best[key] = max(best.get(key, 0), judged.get(hit["docid"], 0))
    return [best[tuple(testing.normalise(hit["content"]))] for hit in hits]


@pytest.mark.parametrize("build", [multi_turn, single_message])
def test_oracle_orders_by_grade(dl19, oracle_server, build):
    entries, qrels = dl19
    entry = entries[0]
    assert entry["query"] == "how long is life cycle of flea"
    hits = entry["hits"][:20]
    grades = effective_grades(entry, qrels, hits)
    assert len(set(grades)) > 1   # the test means something
    before = oracle_server.stats()
    response = ask(client_for(oracle_server),
                   build(entry["query"], [first_words(h["content"]) for h in hits]))
    order = ids_of(response.choices[0].message.content)
    assert sorted(order) == list(range(1, 21))
    ranked = [grades[i - 1] for i in order]
    assert ranked == sorted(grades, reverse=True)
    # ties are broken by identifier
    for a, b in zip(order, order[1:]):
        if grades[a - 1] == grades[b - 1]:
            assert a < b
    after = oracle_server.stats()
    assert after["unmatched_passages"] == before["unmatched_passages"]
    assert after["unidentified_queries"] == before["unidentified_queries"]


def test_oracle_handles_rewritten_and_short_passages(dl19, oracle_server):
    """Brackets rewritten to parentheses, collapsed whitespace, passages cut to a few words."""
    entries, qrels = dl19
    entry = entries[5]
    hits = entry["hits"][30:45]
    grades = effective_grades(entry, qrels, hits)
    passages = []
    for k, hit in enumerate(hits):
        text = re.sub(r"\[(\d+)\]", r"(\1)", hit["content"])
        passages.append(first_words(text, 100 if k % 2 else 30))
    response = ask(client_for(oracle_server), multi_turn(entry["query"], passages))
    order = ids_of(response.choices[0].message.content)
    assert [grades[i - 1] for i in order] == sorted(grades, reverse=True)


def test_query_index_matching_rules():
    index = testing.QueryIndex("q", "query")
    index.add("d1", "The quick brown fox jumps over the lazy dog near the riverbank at dawn today.")
    index.add("d2", "The QUICK brown fox [jumps] over the lazy dog near the riverbank at dawn, too!")
    index.add("d3", "Completely different text about databases and indexes of many kinds here.")
    assert index.match("the quick brown fox jumps over the lazy dog near the river") == ["d1", "d2"]
    assert index.match("the quick brown fox jumps over the lazy dog near the riverbank at dawn today") == ["d1"]
    assert index.match("Completely different text about data") == ["d3"]      # cut mid-word
    assert index.match("Title: Some title Content: Completely different text") == ["d3"]
    assert index.match("zebra") == []


def test_oracle_unknown_query_answers_identity(oracle_server):
    response = ask(client_for(oracle_server), single_message(QUERY, PASSAGES))
    assert response.choices[0].message.content == "[1] > [2] > [3] > [4] > [5]"


def test_noisy_is_a_deterministic_perturbed_permutation(dl19):
    entries, qrels = dl19
    entry = entries[0]
    messages = single_message(entry["query"], [first_words(h["content"]) for h in entry["hits"][:20]])
    with start_server("noisy", data_dir=DATA_DIR, seed=4) as server:
        client = client_for(server)
        first = ids_of(ask(client, messages).choices[0].message.content)
        second = ids_of(ask(client, messages).choices[0].message.content)
    with start_server("oracle", data_dir=DATA_DIR) as server:
        exact = ids_of(ask(client_for(server), messages).choices[0].message.content)
    assert first == second
    assert sorted(first) == list(range(1, 21))
    assert first != exact
    # only adjacent swaps: every passage is at most one place away from its oracle position
    assert all(abs(first.index(i) - exact.index(i)) <= 1 for i in exact)


# ----------------------------------------------------------------------------------------------
# Letter identifiers, prefill (continuing an assistant message) and log-probabilities
# ----------------------------------------------------------------------------------------------

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def letter_message(query: str, passages: list[str]) -> list[dict]:
    """The FIRST prompt: passages named [A], [B], ... in one user message."""
    lines = "\n".join(f"[{LETTERS[i]}] {p}" for i, p in enumerate(passages))
    n = len(passages)
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": (
            f"I will provide you with {n} passages, each indicated by an alphabetical identifier "
            f"[]. Rank the passages based on their relevance to the search query: {query}.\n\n"
            f"{lines}\nSearch Query: {query}.\nRank the {n} passages above. The output format "
            "should be [] > [], e.g., [D] > [B]. Only respond with the ranking results.")},
    ]


def prefilled(messages: list[dict], start: str = "[") -> list[dict]:
    return [*messages, {"role": "assistant", "content": start}]


def letters_of(answer: str) -> list[str]:
    return re.findall(r"\[([A-Z])\]", answer)


def alternatives_of(entry: dict) -> list[tuple[str, float]]:
    return [(a["token"], a["logprob"]) for a in entry["top_logprobs"]]


def softmax_logprobs(n: int) -> list[float]:
    norm = math.log(sum(math.exp(-k) for k in range(n)))
    return [-k - norm for k in range(n)]


@pytest.fixture
def cl100k():
    counter = testing.Tokens()
    if counter.encoding is None:
        pytest.skip("cl100k_base is not available")
    return counter


def test_read_prompt_letters_and_one_kind_per_prompt():
    prompt = testing.read_prompt(letter_message(QUERY, PASSAGES[:3]))
    assert prompt.letters and prompt.passages == dict(enumerate(PASSAGES[:3], 1))
    # [D] > [B] in the instructions is inline, a "[D] > [B]" line is a format example.
    mixed = [{"role": "user", "content": "[B] second\n[A] first\n[1] a number\n[D] > [B]\n"
                                         "[AB] two letters\n[c] lowercase\n[A] again"}]
    prompt = testing.read_prompt(mixed)
    assert prompt.letters and prompt.passages == {2: "second", 1: "first"}
    numbers = [{"role": "user", "content": "[2] two\n[A] a letter\n[1] one"}]
    prompt = testing.read_prompt(numbers)
    assert not prompt.letters and prompt.passages == {2: "two", 1: "one"}
    assert testing.format_ranking([3, 1, 26], letters=True) == "[C] > [A] > [Z]"
    assert testing.format_ranking([3, 1]) == "[3] > [1]"


def test_letter_prompts_are_answered_in_letters():
    messages = letter_message(QUERY, PASSAGES)
    with start_server("identity") as server:
        identity = ask(client_for(server), messages).choices[0].message.content
    with start_server("reverse") as server:
        reverse = ask(client_for(server), messages).choices[0].message.content
        twenty = ask(client_for(server), letter_message(QUERY, [f"passage {i}" for i in range(20)]))
    assert identity == "[A] > [B] > [C] > [D] > [E]"
    assert reverse == "[E] > [D] > [C] > [B] > [A]"
    assert twenty.choices[0].message.content == " > ".join(f"[{c}]" for c in LETTERS[19::-1])


def test_oracle_with_unknown_query_answers_letters_in_order(oracle_server):
    response = ask(client_for(oracle_server), letter_message(QUERY, PASSAGES))
    assert response.choices[0].message.content == "[A] > [B] > [C] > [D] > [E]"


def test_prefill_is_continued():
    counter = testing.Tokens()
    with start_server("reverse") as server:
        client = client_for(server)
        letters = ask(client, prefilled(letter_message(QUERY, PASSAGES)))
        numbers = ask(client, prefilled(single_message(QUERY, PASSAGES), "[5] > ["))
        turns = ask(client, prefilled(multi_turn(QUERY, PASSAGES)))
        other = ask(client, prefilled(single_message(QUERY, PASSAGES), "[1] > ["))
        empty = ask(client, prefilled(single_message(QUERY, PASSAGES), ""))
        cut = ask(client, prefilled(letter_message(QUERY, PASSAGES)), max_tokens=3)
        log = server.log()
    assert letters.choices[0].message.content == "E] > [D] > [C] > [B] > [A]"
    assert letters.usage.completion_tokens == counter.count("E] > [D] > [C] > [B] > [A]")
    assert numbers.choices[0].message.content == "4] > [3] > [2] > [1]"
    # The passages come from the user messages; "Received passage [i]." answers are not prompts.
    assert turns.choices[0].message.content == "5] > [4] > [3] > [2] > [1]"
    # A start the answer does not have: the whole answer.
    assert other.choices[0].message.content == "[5] > [4] > [3] > [2] > [1]"
    assert empty.choices[0].message.content == "[5] > [4] > [3] > [2] > [1]"
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens <= 3
    assert "E] > [D] > [C] > [B] > [A]".startswith(cut.choices[0].message.content)
    assert [entry["prefill"] for entry in log] == ["[", "[5] > [", "[", "[1] > [", "", "["]
    assert log[0]["answer"] == "E] > [D] > [C] > [B] > [A]"


def test_prefill_flags_of_vllm_are_accepted():
    messages = prefilled(letter_message(QUERY, PASSAGES))
    with start_server("identity") as server:
        status, _, body = post(server.base_url + "/chat/completions", chat_body(
            messages, continue_final_message=True, add_generation_prompt=False))
        response = ask(client_for(server), messages, extra_body={
            "continue_final_message": True, "add_generation_prompt": False})
        stats = server.stats()
    assert status == 200 and body["choices"][0]["message"]["content"] == "A] > [B] > [C] > [D] > [E]"
    assert response.choices[0].message.content == "A] > [B] > [C] > [D] > [E]"
    assert stats["bad_requests"] == 0 and stats["completions"] == 2


def check_logprobs_shape(choice: dict, top: int) -> list[dict]:
    """The OpenAI shape; the tokens spell the reply; later tokens are certain."""
    logprobs = choice["logprobs"]
    assert set(logprobs) - {"refusal"} == {"content"}    # the openai package adds "refusal"
    content = logprobs["content"]
    assert "".join(e["token"] for e in content) == choice["message"]["content"]
    for position, entry in enumerate(content):
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
        assert isinstance(entry["logprob"], float) and entry["logprob"] <= 0.0
        assert entry["bytes"] == list(entry["token"].encode("utf-8"))
        assert len(entry["top_logprobs"]) <= top
        for alternative in entry["top_logprobs"]:
            assert set(alternative) == {"token", "logprob", "bytes"}
            assert alternative["bytes"] == list(alternative["token"].encode("utf-8"))
        if position > 0:
            assert entry["logprob"] == 0.0
            assert entry["top_logprobs"] == [{"token": entry["token"], "logprob": 0.0,
                                              "bytes": entry["bytes"]}][:top]
    return content


def check_first_token(entry: dict, expected: list[str]) -> None:
    """Alternatives in the judge's order, a log-softmax of logits 0, -1, ..., best first."""
    tokens = [token for token, _ in alternatives_of(entry)]
    values = [value for _, value in alternatives_of(entry)]
    assert tokens == expected
    assert all(a > b for a, b in zip(values, values[1:]))
    assert sum(math.exp(v) for v in values) <= 1 + 1e-9
    assert entry["token"] == tokens[0] and entry["logprob"] == values[0]


def test_logprobs_first_token_ranks_letters(cl100k):
    messages = prefilled(letter_message(QUERY, PASSAGES))
    with start_server("reverse") as server:
        url = server.base_url + "/chat/completions"
        _, _, full = post(url, chat_body(messages, logprobs=True, top_logprobs=20))
        _, _, three = post(url, chat_body(messages, logprobs=True, top_logprobs=3))
        _, _, none = post(url, chat_body(messages, logprobs=True))
    choice = full["choices"][0]
    assert set(choice["logprobs"]) == {"content"}
    content = check_logprobs_shape(choice, 20)
    check_first_token(content[0], ["E", "D", "C", "B", "A"])
    assert [v for _, v in alternatives_of(content[0])] == pytest.approx(softmax_logprobs(5))
    assert sum(math.exp(v) for _, v in alternatives_of(content[0])) == pytest.approx(1.0)
    assert [e["token"] for e in content] == ["E", "]", " >", " [", "D", "]", " >", " [", "C", "]",
                                             " >", " [", "B", "]", " >", " [", "A", "]"]
    first = check_logprobs_shape(three["choices"][0], 3)[0]
    check_first_token(first, ["E", "D", "C"])
    assert alternatives_of(first) == alternatives_of(content[0])[:3]
    assert all(e["top_logprobs"] == [] for e in check_logprobs_shape(none["choices"][0], 0))
    assert none["choices"][0]["logprobs"]["content"][0]["logprob"] == content[0]["logprob"]


def test_logprobs_first_token_ranks_numbers_after_the_prefix(cl100k):
    passages = [f"passage number {i}" for i in range(1, 13)]
    with start_server("reverse") as server:
        client = client_for(server)
        after = ask(client, prefilled(single_message(QUERY, passages)), logprobs=True,
                    top_logprobs=20)
        second = ask(client, prefilled(single_message(QUERY, passages), "[12] > ["),
                     logprobs=True, top_logprobs=20)
        partial = ask(client, prefilled(single_message(QUERY, passages), "[1"), logprobs=True,
                      top_logprobs=20)
        bare = ask(client, single_message(QUERY, passages), logprobs=True, top_logprobs=5)
        letters = ask(client, letter_message(QUERY, PASSAGES), logprobs=True, top_logprobs=5)
    first = after.choices[0].logprobs.content[0].model_dump()
    check_first_token(first, [str(i) for i in range(12, 0, -1)])     # "12" is one token
    # Identifiers already written are not alternatives.
    check_first_token(second.choices[0].logprobs.content[0].model_dump(),
                      [str(i) for i in range(11, 0, -1)])
    # After "[1" only the identifiers that start with 1 fit: 12, 11, 10, 1.
    assert partial.choices[0].message.content == "2] > [11] > [10] > [9] > [8] > [7] > [6] > " \
                                                 "[5] > [4] > [3] > [2] > [1]"
    check_first_token(partial.choices[0].logprobs.content[0].model_dump(), ["2", "1", "0", "]"])
    # Without a prefix a number's answer starts with "[", whatever comes first: one alternative.
    entry = bare.choices[0].logprobs.content[0]
    assert [(a.token, a.logprob) for a in entry.top_logprobs] == [("[", 0.0)]
    # cl100k writes "[E" as one token: the alternatives still name the letters, best first.
    check_first_token(letters.choices[0].logprobs.content[0].model_dump(),
                      ["[E", "[D", "[C", "[B", "[A"])


def test_logprobs_of_garbage_and_of_the_estimate():
    with start_server("garbage", seed=1) as server:
        client = client_for(server)
        for _ in range(6):
            choice = ask(client, letter_message(QUERY, PASSAGES), logprobs=True,
                         top_logprobs=2).choices[0].model_dump()
            for entry in check_logprobs_shape(choice, 2):
                assert entry["logprob"] == 0.0 and alternatives_of(entry) == [(entry["token"], 0.0)]
    server = testing.RunningServer(testing.make_server("reverse", estimate_usage=True))
    with server:
        choice = ask(client_for(server), prefilled(letter_message(QUERY, PASSAGES)),
                     logprobs=True, top_logprobs=5).choices[0].model_dump()
    content = check_logprobs_shape(choice, 5)
    assert [e["token"] for e in content] == ["E] >", " [D]", " > [", "C] >", " [B]", " > [", "A]"]
    check_first_token(content[0], ["E] >", "D] >", "C] >", "B] >", "A] >"])


def test_max_tokens_one_gives_one_token(cl100k):
    with start_server("reverse") as server:
        response = ask(client_for(server), prefilled(letter_message(QUERY, PASSAGES)),
                       max_tokens=1, logprobs=True, top_logprobs=20)
        numbers = ask(client_for(server), single_message(QUERY, PASSAGES),
                      max_completion_tokens=1, logprobs=True, top_logprobs=20)
    choice = response.choices[0]
    assert choice.finish_reason == "length" and choice.message.content == "E"
    assert response.usage.completion_tokens == 1 and len(choice.logprobs.content) == 1
    check_first_token(choice.logprobs.content[0].model_dump(), ["E", "D", "C", "B", "A"])
    assert numbers.choices[0].message.content == "["
    assert len(numbers.choices[0].logprobs.content) == 1


@pytest.mark.parametrize("extra, param", [
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": "3"}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 2.5}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": True}, "top_logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"logprobs": False, "top_logprobs": 0}, "top_logprobs"),
    ({"logprobs": "yes"}, "logprobs"),
])
def test_logprobs_validation(extra, param):
    with start_server("identity") as server:
        status, _, body = post(server.base_url + "/chat/completions",
                               chat_body(single_message(QUERY, PASSAGES), **extra))
        stats = server.stats()
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == param
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert stats["bad_requests"] == 1 and stats["completions"] == 0


def test_logprobs_validation_through_the_client():
    with start_server("identity") as server:
        client = client_for(server)
        with pytest.raises(openai.BadRequestError) as error:
            ask(client, single_message(QUERY, PASSAGES), logprobs=True, top_logprobs=21)
        assert error.value.body["param"] == "top_logprobs"
        with pytest.raises(openai.BadRequestError):
            ask(client, single_message(QUERY, PASSAGES), top_logprobs=5)
        ok = ask(client, single_message(QUERY, PASSAGES), logprobs=True, top_logprobs=0)
        null = post(server.base_url + "/chat/completions", chat_body(
            single_message(QUERY, PASSAGES), logprobs=None, top_logprobs=None))
    assert ok.choices[0].logprobs.content[0].top_logprobs == []
    assert null[0] == 200 and null[2]["choices"][0]["logprobs"] is None


def test_logprobs_null_unless_asked_and_from_a_server_without_them():
    messages = prefilled(letter_message(QUERY, PASSAGES))
    with start_server("reverse") as server:
        client = client_for(server)
        plain = ask(client, messages)
        off = ask(client, messages, logprobs=False)
    with start_server("reverse", logprobs=False) as server:
        status, _, body = post(server.base_url + "/chat/completions",
                               chat_body(messages, logprobs=True, top_logprobs=5))
        asked = ask(client_for(server), messages, logprobs=True, top_logprobs=5)
        log = server.log()
    assert plain.choices[0].logprobs is None and off.choices[0].logprobs is None
    assert status == 200 and body["choices"][0]["logprobs"] is None
    assert body["choices"][0]["message"]["content"] == "E] > [D] > [C] > [B] > [A]"
    assert asked.choices[0].logprobs is None
    assert [(e["logprobs"], e["top_logprobs"]) for e in log] == [(True, 5), (True, 5)]


def test_script_no_logprobs():
    process = subprocess.Popen([sys.executable, "-m", "rerank.testing.server", "--judge", "reverse", "--port", "0",
                                "--no-logprobs"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        line = process.stdout.readline().strip()
        match = re.fullmatch(r"READY (http://127\.0\.0\.1:(\d+)/v1)", line)
        assert match, line
        client = openai.OpenAI(base_url=match.group(1), api_key="x", max_retries=0, timeout=10)
        answer = ask(client, prefilled([{"role": "user", "content": "[A] a\n[B] b"}]),
                     logprobs=True, top_logprobs=2)
        assert answer.choices[0].message.content == "B] > [A]"
        assert answer.choices[0].logprobs is None
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_log_records_the_request_fields():
    messages = single_message(QUERY, PASSAGES)
    with start_server("identity") as server:
        client = client_for(server)
        ask(client, messages)
        ask(client, messages, max_tokens=7, logprobs=True, top_logprobs=3)
        ask(client, prefilled(messages), max_completion_tokens=1, logprobs=False)
        log = server.log()
    fields = ("max_tokens", "max_completion_tokens", "logprobs", "top_logprobs", "prefill")
    assert [tuple(entry[f] for f in fields) for entry in log] == [
        (None, None, None, None, None), (7, None, True, 3, None), (None, 1, False, None, "[")]
    assert log[2]["answer"] == "1" and log[2]["finish_reason"] == "length"


def test_oracle_ranks_letters_and_its_first_token_alternatives(dl19, oracle_server, cl100k):
    entries, qrels = dl19
    entry = entries[0]
    hits = entry["hits"][:20]
    grades = effective_grades(entry, qrels, hits)
    messages = letter_message(entry["query"], [first_words(h["content"]) for h in hits])
    client = client_for(oracle_server)
    answer = ask(client, messages).choices[0].message.content
    order = [LETTERS.index(c) for c in letters_of(answer)]
    assert sorted(order) == list(range(20))
    assert [grades[i] for i in order] == sorted(grades, reverse=True)
    response = ask(client, prefilled(messages), max_tokens=1, logprobs=True, top_logprobs=20)
    first = response.choices[0].logprobs.content[0].model_dump()
    check_first_token(first, letters_of(answer))
    assert response.choices[0].message.content == letters_of(answer)[0]


def test_noisy_continues_its_own_answer(dl19):
    entries, _ = dl19
    entry = entries[0]
    messages = single_message(entry["query"], [first_words(h["content"]) for h in entry["hits"][:20]])
    with start_server("noisy", data_dir=DATA_DIR, seed=4) as server:
        client = client_for(server)
        whole = ask(client, messages).choices[0].message.content
        continued = ask(client, prefilled(messages)).choices[0].message.content
    assert continued == whole[1:]


# ----------------------------------------------------------------------------------------------
# Hostile servers: drip, drip_headers, hang, redirect, wrong_types, huge
# ----------------------------------------------------------------------------------------------

def raw_exchange(port: int, request: bytes, timeout: float = 10.0) -> tuple[bytes, list[float]]:
    """Send ``request`` on a new connection and read until the server closes it (or ``timeout``
    passes without a byte); the bytes and the time each recv returned, from the send."""
    chunks, times = [], []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sent = time.perf_counter()
        sock.sendall(request)
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            times.append(time.perf_counter() - sent)
            head, ended, body = b"".join(chunks).partition(b"\r\n\r\n")
            length = re.search(rb"Content-Length: (\d+)", head)
            if ended and length and len(body) >= int(length.group(1)):
                break                                  # a framed answer: stop at its end
    return b"".join(chunks), times


def raw_chat(messages: list[dict] | None = None, path: str = "/v1/chat/completions") -> bytes:
    body = chat_body(messages or [{"role": "user", "content": "[1] a\n[2] b"}])
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def split_response(data: bytes) -> tuple[int, dict, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_drip_sends_headers_at_once_and_the_body_a_byte_at_a_time():
    interval = 0.005
    with start_server("identity", drip=interval) as server:
        data, times = raw_exchange(server.port, raw_chat())
        stats = server.wait_for(lambda s: s["body_bytes"] > 0)
    status, headers, body = split_response(data)
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["content"] == "[1] > [2]"
    assert stats["body_bytes"] == len(body) == int(headers["Content-Length"])
    assert len(times) > len(body) / 4                     # it came in many small pieces
    assert times[-1] >= len(body) * interval * 0.8        # and took about a drip per byte
    assert times[0] < len(body) * interval / 2            # the headers came first, at once


def test_drip_headers_sends_the_status_line_a_byte_at_a_time():
    interval = 0.005
    with start_server("identity", drip_headers=interval) as server:
        data, times = raw_exchange(server.port, raw_chat())
    status, headers, body = split_response(data)
    head = data.partition(b"\r\n\r\n")[0]
    assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "[1] > [2]"
    assert len(times) > len(head) / 4
    assert times[-1] >= len(head) * interval * 0.8


def test_hang_reads_the_request_and_never_answers_until_stopped():
    server = start_server("identity", hang=True)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw_chat())
        stats = server.wait_for(lambda s: s["hung"] == 1)
        assert stats["requests"] == 1 and stats["in_flight"] == 1 and stats["completions"] == 0
        sock.settimeout(0.2)
        with pytest.raises(socket.timeout):
            sock.recv(1)                                   # nothing came
        sock.settimeout(10)
        started = time.perf_counter()
        server.stop()                                      # the hung answer ends with the server
        assert sock.recv(1) == b""                         # closed, without a byte
        assert time.perf_counter() - started < 5
    # The handler's thread counts the request out just after the socket closes: wait for it.
    assert server.wait_for(lambda s: s["in_flight"] == 0)["in_flight"] == 0


def test_redirect_to_another_origin_and_to_the_same_origin():
    with start_server("identity") as target:
        with start_server("identity", redirect=target.base_url) as server:
            status, headers, body = split_response(raw_exchange(server.port, raw_chat())[0])
            assert status == 307 and body == b""
            assert headers["Location"] == target.base_url + "/chat/completions"
            # GET /models is not redirected unless fault_models
            status, _, _ = split_response(raw_exchange(
                server.port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")[0])
            assert status == 200
            assert server.stats()["redirects"] == 1 and server.stats()["completions"] == 0
        with start_server("identity", redirect=target.base_url, fault_models=True) as server:
            status, headers, _ = split_response(raw_exchange(
                server.port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")[0])
            assert status == 307 and headers["Location"] == target.base_url + "/models"
        assert target.stats()["requests"] == 0
    with start_server("identity", redirect="/moved/v1") as server:
        client = client_for(server)            # the SDK's client follows redirects
        answer = ask(client, [{"role": "user", "content": "[1] a\n[2] b"}])
        assert answer.choices[0].message.content == "[1] > [2]"
        stats = server.stats()
    assert stats["redirects"] == 1 and stats["completions"] == 1


def test_wrong_types_cycle_through_a_number_a_list_and_an_object():
    with start_server("identity", wrong_types=True) as server:
        url = server.base_url + "/chat/completions"
        contents = [post(url, chat_body([{"role": "user", "content": "[1] a\n[2] b"}]))[2]
                    ["choices"][0]["message"]["content"] for _ in range(4)]
    assert contents == [42, ["[1] > [2]"], {"text": "[1] > [2]"}, 42]


def test_huge_answer_without_usage_or_length():
    with start_server("identity", huge=1.5) as server:
        data, _ = raw_exchange(server.port, raw_chat())
        stats = server.wait_for(lambda s: s["body_bytes"] == len(data.partition(b"\r\n\r\n")[2]))
    status, headers, body = split_response(data)
    answer = json.loads(body)
    assert status == 200
    assert "Content-Length" not in headers and headers["Connection"] == "close"
    assert len(body) == int(1.5 * (1 << 20)) == stats["body_bytes"]
    assert "usage" not in answer
    content = answer["choices"][0]["message"]["content"]
    assert content.startswith("[1] > [2] lorem ipsum") and answer["choices"][0]["finish_reason"] == "stop"


def test_a_client_that_stops_reading_a_huge_answer_is_counted():
    with start_server("identity", huge=64) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(raw_chat())
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
            server.wait_for(lambda s: s["body_bytes"] > 0)
        stats = server.wait_for(lambda s: s["disconnects"] == 1)
    assert stats["body_bytes"] < 64 << 20


def test_faults_apply_to_models_only_with_fault_models():
    with start_server("identity", hang=True) as server:
        client = client_for(server)
        assert [m.id for m in client.models.list()] == [testing.MODEL_ID]
    with start_server("identity", hang=True, fault_models=True) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
            server.wait_for(lambda s: s["hung"] == 1)


def test_wait_for_raises_when_the_condition_never_holds():
    with start_server("identity") as server:
        with pytest.raises(TimeoutError, match="never met"):
            server.wait_for(lambda s: s["requests"] > 0, timeout=0.05)


def test_script_mode_fault_options():
    usage = subprocess.run([sys.executable, "-m", "rerank.testing.server", "--help"], capture_output=True, text=True,
                           timeout=60).stdout
    for option in ("--drip", "--drip-headers", "--hang", "--redirect", "--wrong-types", "--huge",
                   "--fault-models"):
        assert option in usage
    process, base_url = testing.start_process("--judge", "identity", "--wrong-types",
                                                 "--redirect", "/moved/v1")
    try:
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=10)
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "[1] a\n[2] b"}])
        assert raw.http_response.json()["choices"][0]["message"]["content"] == 42
        assert "/moved/v1/chat/completions" in str(raw.http_response.url)
    finally:
        process.terminate()
        process.wait(timeout=5)
