"""``rerank serve``: request checks, response bodies and the shared rankings (unit), then the CLI's
server over real HTTP in front of the oracle judge (DL19): both API versions, errors of every
kind, metrics, the call cache, bearer auth, served models, dedupe, cancellation, a free event loop."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import data_dir
from llm_server import start_server
from rerank.errors import BackendError, ConfigError
from rerank.serve import ApiError, Limits, Metrics, RerankCall, RerankService, parse_body, relevance_scores
from rerank.serve.app import response_body
from rerank.serve.service import Ranked
from rerank.types import Candidate, Usage
from serve_process import ServeProcess, dl19_cases, read_metrics

try:
    import httpx
except ImportError:  # the fixtures skip the HTTP tests
    httpx = None

LIMITS = Limits(max_documents=3, max_request_bytes=2000, max_query_bytes=50, max_tokens_per_doc=100)


def parse(body, version: int = 2, limits: Limits = LIMITS) -> RerankCall:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    return parse_body(raw, version, limits)


def request(**fields) -> dict:
    """A valid v2 body with ``fields`` replaced (None: the field left out)."""
    body = {"model": "m", "query": "q", "documents": ["a", "b"], **fields}
    return {name: value for name, value in body.items() if value is not None}


# --- rerank.serve.requests -------------------------------------------------------------------

MALFORMED = [
    (b"not json", 400, "JSON"),
    (b"\xff\xfe{}", 400, "JSON"),
    (b"", 400, "JSON"),
    (b"[" * 1990, 400, "JSON"),  # within the byte limit, nested past the recursion limit
    (b'{"model":"m","query":"\\ud800","documents":["a"]}', 400, "surrogate"),
    (b'{"model":"m","query":"q","documents":["a \\udc00"]}', 400, "surrogate"),
    ([1, 2], 400, "object"),
    ("q", 400, "object"),
    (None, 400, "object"),
    (request(model=None), 400, "model"),
    (request(model=3), 400, "model"),
    (request(model=" "), 400, "model"),
    (request(query=None), 400, "query"),
    (request(query=3), 400, "query"),
    (request(query=["q"]), 400, "query"),
    ({**request(), "query": None}, 400, "query"),
    (request(query=""), 400, "query"),
    (request(query="   "), 400, "query"),
    (request(query="q" * 51), 400, "query"),
    (request(query="é" * 26), 400, "query"),       # 26 characters, 52 bytes
    (request(documents=None), 400, "documents"),
    (request(documents="a"), 400, "documents"),
    (request(documents={"text": "a"}), 400, "documents"),
    (request(documents=[]), 400, "documents"),
    (request(documents=["a", "b", "c", "d"]), 400, "too many documents"),
    (request(documents=[1]), 400, "documents[0]"),
    (request(documents=["a", None]), 400, "documents[1]"),
    (request(documents=[["a"]]), 400, "documents[0]"),
    (request(documents=["a", " "]), 400, "documents[1]"),
    (request(documents=[{"title": "t"}]), 400, "documents[0]"),
    (request(documents=[{"text": 3}]), 400, "documents[0]"),
    (request(documents=["a", {"text": "b", "x": json.loads("[" * 33 + "]" * 33)}]), 400, "documents[1] is nested"),
    (request(rank_fields="title"), 400, "rank_fields"),
    (request(rank_fields=[]), 400, "rank_fields"),
    (request(rank_fields=[1]), 400, "rank_fields"),
    (request(documents=[{"title": "t"}], rank_fields=["body"]), 400, "documents[0]"),
    (request(top_n=0), 400, "top_n"),
    (request(top_n=-1), 400, "top_n"),
    (request(top_n=True), 400, "top_n"),
    (request(top_n="2"), 400, "top_n"),
    (request(top_n=1.5), 400, "top_n"),
    (request(return_documents="yes"), 400, "return_documents"),
    (request(return_documents=1), 400, "return_documents"),
    (request(max_tokens_per_doc=0), 400, "max_tokens_per_doc"),
    (request(max_tokens_per_doc=-3), 400, "max_tokens_per_doc"),
    (request(max_tokens_per_doc=101), 400, "max_tokens_per_doc"),
    (request(max_tokens_per_doc=True), 400, "max_tokens_per_doc"),
    (request(max_tokens_per_doc="5"), 400, "max_tokens_per_doc"),
    (request(documents=["x" * 2000]), 413, "too large"),
]


@pytest.mark.parametrize(("body", "status", "names"), MALFORMED)
def test_malformed_request_is_an_api_error_naming_the_field(body, status, names):
    with pytest.raises(ApiError) as caught:
        parse(body)
    assert caught.value.status == status
    assert names in caught.value.message
    assert caught.value.body() == {"message": caught.value.message}


def test_v1_needs_no_model_and_null_optional_fields_mean_their_defaults():
    # LangChain sends max_tokens_per_doc null when it is unset.
    call = parse({"query": "q", "documents": ["a", "b"], "model": None, "top_n": None, "return_documents": None,
                  "max_tokens_per_doc": None, "rank_fields": None}, version=1)
    assert (call.version, call.model, call.top_n, call.return_documents) == (1, None, None, False)
    assert call.max_tokens_per_doc == LIMITS.max_tokens_per_doc
    assert call.documents == ("a", "b")


def test_limits_themselves_are_accepted():
    call = parse(request(query="q" * 50, documents=["a", "b", "c"], top_n=10, max_tokens_per_doc=100,
                         return_documents=True))
    assert (call.top_n, call.max_tokens_per_doc, call.return_documents) == (10, 100, True)


def test_object_documents_rank_their_text_or_their_rank_fields_as_lines():
    documents = [{"text": "plain", "id": 7}, {"text": "other"}]
    call = parse(request(documents=documents))
    assert call.documents == ("plain", "other") and call.originals == tuple(documents)
    documents = [{"title": "T", "year": 2020, "tags": ["a"]}, {"title": "U", "year": None, "tags": []}]
    call = parse(request(documents=documents, rank_fields=["title", "year", "tags"]))
    assert call.documents == ('title: T\nyear: 2020\ntags: ["a"]', "title: U\nyear: null\ntags: []")
    assert call.originals == tuple(documents)
    deep = {"text": "t", "x": json.loads("[" * 32 + "]" * 32)}  # as deep as documents may nest
    assert parse(request(documents=[deep]), limits=Limits()).originals == (deep,)


def test_identical_rankings_share_a_key_whatever_top_n_or_return_documents():
    one = parse(request(top_n=1))
    assert one.key() == parse(request(return_documents=True)).key()
    assert one.key() != parse(request(max_tokens_per_doc=50)).key()
    assert one.key() != parse(request(model="other")).key()


# Strings with lone surrogates too: json.dumps writes them as \\uD800-style escapes.
TEXT = st.text() | st.text(st.characters(categories=["Cs", "Ll"]), max_size=3)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
                    max_leaves=12)
FIELDS = st.fixed_dictionaries({}, optional={
    "model": JSON | TEXT, "query": JSON | TEXT, "rank_fields": JSON | st.lists(TEXT, max_size=2),
    "documents": JSON | st.lists(TEXT | st.dictionaries(st.sampled_from(["text", "title"]), JSON), max_size=5),
    "top_n": JSON | st.integers(-2, 6), "return_documents": JSON, "max_tokens_per_doc": JSON | st.integers(-2, 200)})


@settings(max_examples=150)
@given(body=JSON | FIELDS, version=st.sampled_from([1, 2]))
def test_any_json_body_parses_or_is_a_4xx(body, version):
    try:
        call = parse(body, version)
    except ApiError as error:
        assert 400 <= error.status < 500 and error.message
        return
    assert len(call.documents) == len(call.originals) <= LIMITS.max_documents
    assert all(isinstance(text, str) and text.strip() for text in call.documents)
    assert isinstance(call.query, str) and call.query.strip()


@settings(max_examples=100)
@given(raw=st.binary(max_size=300) | st.integers(1, 1000).map(lambda depth: b"[" * depth + b"]" * depth))
def test_any_bytes_parse_or_are_a_4xx(raw):
    try:
        parse(raw)
    except ApiError as error:
        assert 400 <= error.status < 500


# --- response bodies and scores ----------------------------------------------------------------

def test_relevance_scores_decrease_strictly_from_one():
    scores = relevance_scores(20)
    assert scores[0] == 1.0 and all(a > b > 0 for a, b in zip(scores, scores[1:]))
    assert relevance_scores(1) == [1.0]


@pytest.mark.parametrize("version", [1, 2])
def test_response_body_follows_cohere(version):
    documents = [{"text": "a", "id": 1}, "b", {"text": "c"}]
    call = parse(request(documents=documents, top_n=2, return_documents=True), version)
    body = response_body(call, Ranked((2, 0, 1), prompt_tokens=30, completion_tokens=4, calls=1, cache_hits=0,
                                      billed_prompt_tokens=30, billed_completion_tokens=4))
    assert [result["index"] for result in body["results"]] == [2, 0]
    assert body["results"][0]["relevance_score"] > body["results"][1]["relevance_score"]
    # v1 returns object documents as sent; v2 (string documents) returns the text ranked.
    expected = [{"text": "c"}, {"text": "a", "id": 1}] if version == 1 else [{"text": "c"}, {"text": "a"}]
    assert [result["document"] for result in body["results"]] == expected
    assert body["meta"]["billed_units"] == {"search_units": 1, "input_tokens": 30, "output_tokens": 4}
    assert body["meta"]["tokens"] == {"input_tokens": 30, "output_tokens": 4}
    # Calls the cache answered are billed nothing; their tokens still show in meta.tokens.
    cached = response_body(call, Ranked((2, 0, 1), 30, 4, 1, 1))
    assert cached["meta"]["billed_units"] == {"search_units": 1, "input_tokens": 0, "output_tokens": 0}
    assert cached["meta"]["tokens"] == {"input_tokens": 30, "output_tokens": 4}
    assert body["meta"]["api_version"]["version"] == str(version) and body["id"]
    plain = response_body(parse(request(), version), Ranked((1, 0), 0, 0, 0, 0))
    assert all("document" not in result for result in plain["results"])


# --- rerank.serve.service: one ranking for identical requests, cancelled when all leave ------------

class GatedReranker:
    """A reranker whose rankings wait for ``gate``, reverse the documents, and count themselves;
    with ``linger``, a cancelled ranking ends only once ``released`` is set (as closing its
    connections takes a while)."""

    def __init__(self, linger: bool = False, error: Exception | None = None):
        self.gate, self.released = asyncio.Event(), asyncio.Event()
        self.started = self.cancelled = 0
        self.linger, self.error = linger, error

    async def rerank(self, request):
        self.started += 1
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            if self.linger:
                await self.released.wait()
            raise
        if self.error is not None:
            raise self.error
        return SimpleNamespace(candidates=[Candidate(c.docid, c.text) for c in reversed(request.candidates)],
                               usage=Usage(calls=1, prompt_tokens=10, completion_tokens=2),
                               calls=[SimpleNamespace(cached=False, prompt_tokens=10, completion_tokens=2)])


async def until(predicate, timeout: float = 10.0) -> None:
    """Let the loop run (a ranking starts after a thread's work) until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.001)


async def test_identical_requests_in_flight_share_one_ranking():
    reranker = GatedReranker()
    service = RerankService({"m": reranker}, "m")
    calls = [parse(request(top_n=n)) for n in (1, 2, 3)]
    tasks = [asyncio.ensure_future(service.rank(call)) for call in calls]
    other = asyncio.ensure_future(service.rank(parse(request(model=None), version=1)))  # the default model: same
    await until(lambda: reranker.started == 1 and service.metrics.deduplicated == 3)
    reranker.gate.set()
    results = await asyncio.gather(*tasks, other)
    assert reranker.started == 1 and all(result.order == (1, 0) for result in results)
    await service.rank(calls[0])  # a request after the first ended ranks again
    assert reranker.started == 2 and service.metrics.rankings == 2


async def test_ranking_lives_while_one_client_waits_and_is_cancelled_when_all_leave():
    reranker = GatedReranker()
    service = RerankService({"m": reranker}, "m")
    first, second = (asyncio.ensure_future(service.rank(parse(request()))) for _ in range(2))
    await until(lambda: reranker.started == 1)
    first.cancel()
    await until(lambda: first.done())
    assert reranker.cancelled == 0 and service.metrics.cancelled == 0
    reranker.gate.set()
    assert (await second).order == (1, 0)
    reranker.gate.clear()
    lone = asyncio.ensure_future(service.rank(parse(request(query="other"))))
    await until(lambda: reranker.started == 2)
    lone.cancel()
    await until(lambda: reranker.cancelled == 1)
    assert service.metrics.cancelled == 1


async def test_request_arriving_while_a_ranking_is_cancelled_gets_its_own():
    reranker = GatedReranker(linger=True)
    service = RerankService({"m": reranker}, "m")
    leaving = asyncio.ensure_future(service.rank(parse(request())))
    await until(lambda: reranker.started == 1)
    leaving.cancel()
    await until(lambda: reranker.cancelled == 1)  # cancelled, not ended yet
    arriving = asyncio.ensure_future(service.rank(parse(request())))
    try:
        await until(lambda: reranker.started == 2, timeout=2)
    finally:
        reranker.released.set()
    reranker.gate.set()
    assert (await arriving).order == (1, 0)


@pytest.mark.parametrize(("error", "status"), [(BackendError("down"), 502), (ConfigError("too long"), 400)])
async def test_ranking_failures_are_api_errors(error, status):
    reranker = GatedReranker(error=error)
    reranker.gate.set()
    service = RerankService({"m": reranker}, "m", Metrics())
    with pytest.raises(ApiError) as caught:
        await service.rank(parse(request()))
    assert caught.value.status == status
    assert service.metrics.llm_failures == (status == 502)
    with pytest.raises(ApiError) as caught:
        await service.rank(parse(request(model="nope")))
    assert caught.value.status == 404 and "nope" in caught.value.message and "m" in caught.value.message


# --- the CLI's server over HTTP, in front of the oracle judge --------------------------------------

SLOW = 1.0  # seconds the slow judge takes per call


@pytest.fixture(scope="module")
def dl19_data():
    for package in ("httpx", "starlette", "uvicorn"):  # the test extra's client; the serve extra
        pytest.importorskip(package)
    return data_dir("dl19")


@pytest.fixture(scope="module")
def cases(dl19_data):
    return iter(dl19_cases(dl19_data))


@pytest.fixture(scope="module")
def judge(dl19_data):
    with start_server("oracle", data_dir=dl19_data) as server:
        yield server


@pytest.fixture(scope="module")
def served(judge, tmp_path_factory):
    """Two models (full; sliding with a window of 10), a call cache, small limits."""
    with ServeProcess("--model", "judge", "--base-url", judge.base_url, "--serve-model", "full=full",
                      "--serve-model", "slide=sliding:window=10", "--cache", tmp_path_factory.mktemp("serve") / "c.db",
                      "--max-request-bytes", 200_000, "--max-documents", 50) as server:
        yield server


KEY = "serve-test-key-7f3a9c"


@pytest.fixture(scope="module")
def guarded(judge):
    """A key, --verbose, no --serve-model: one model named after the strategy."""
    with ServeProcess("--model", "judge", "--base-url", judge.base_url, "--no-cache", "--verbose",
                      "--api-key-env", "RERANK_TEST_SERVE_KEY", env={"RERANK_TEST_SERVE_KEY": KEY}) as server:
        yield server


@pytest.fixture(scope="module")
def slow_judge(dl19_data):
    with start_server("oracle", data_dir=dl19_data, delay=SLOW) as server:
        yield server


@pytest.fixture(scope="module")
def slow(slow_judge):
    with ServeProcess("--model", "judge", "--base-url", slow_judge.base_url, "--no-cache", "--serve-model",
                      "full=full", "--serve-model", "slide=sliding:window=10") as server:
        yield server


def metrics(server, **headers) -> dict:
    response = httpx.get(server.url + "/metrics", headers=headers, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return read_metrics(response.text)


def requests_with(code: int, path: str = "/v2/rerank") -> str:
    return f'rerank_requests_total{{path="{path}",code="{code}"}}'


def post(server, body, path: str = "/v2/rerank", **kwargs):
    return httpx.post(server.url + path, json=body, timeout=60, **kwargs)


def assert_ranked(body: dict, case, count: int) -> None:
    """Results of a permutation, scores strictly decreasing, the judged-best passage first."""
    indices = [result["index"] for result in body["results"]]
    scores = [result["relevance_score"] for result in body["results"]]
    assert len(indices) == count and len(set(indices)) == count and set(indices) <= set(range(len(case.documents)))
    assert all(a > b for a, b in zip(scores, scores[1:]))
    assert case.grades[indices[0]] == case.best


@pytest.mark.parametrize(("model", "judge_calls"), [("full", 1), ("slide", 3)])
def test_v2_ranks_the_judged_best_first_with_the_model_asked(served, judge, cases, model, judge_calls):
    case = next(cases)
    judge.reset_stats()
    response = post(served, {"model": model, "query": case.query, "documents": case.documents})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_ranked(body, case, 20)
    assert isinstance(body["id"], str) and body["id"]
    # A full ranking of 20 is one call; a sliding window of 10 (step 5) over 20 is three.
    stats = judge.stats()
    assert stats["completions"] == judge_calls
    assert body["meta"]["billed_units"]["input_tokens"] == stats["prompt_tokens"] > 0
    assert body["meta"]["billed_units"]["output_tokens"] == stats["completion_tokens"] > 0


def test_v1_default_model_top_n_and_return_documents(served, judge, cases):
    case = next(cases)
    documents = [{"text": text, "docid": str(number)} for number, text in enumerate(case.documents)]
    before = metrics(served)
    response = post(served, {"query": case.query, "documents": documents, "top_n": 3, "return_documents": True},
                    path="/v1/rerank")
    assert response.status_code == 200, response.text
    body = response.json()
    assert_ranked(body, case, 3)
    # v1 returns object documents as they were sent.
    assert [result["document"] for result in body["results"]] == [documents[r["index"]] for r in body["results"]]
    after = metrics(served)
    assert after["rerank_llm_calls_total"] - before["rerank_llm_calls_total"] == 1  # the default model: full
    assert (body["meta"]["billed_units"]["input_tokens"]
            == after["rerank_llm_prompt_tokens_total"] - before["rerank_llm_prompt_tokens_total"])
    assert (body["meta"]["billed_units"]["output_tokens"]
            == after["rerank_llm_completion_tokens_total"] - before["rerank_llm_completion_tokens_total"])
    # The same ranking again (from the cache) without return_documents, through /rerank (v1).
    again = post(served, {"query": case.query, "documents": documents, "top_n": 3}, path="/rerank").json()
    assert [r["index"] for r in again["results"]] == [r["index"] for r in body["results"]]
    assert all("document" not in result for result in again["results"])


def test_v2_returns_documents_as_text(served, cases):
    case = next(cases)
    response = post(served, {"model": "full", "query": case.query, "documents": case.documents, "top_n": 2,
                             "return_documents": True})
    assert response.status_code == 200, response.text
    assert [r["document"] for r in response.json()["results"]] == [
        {"text": case.documents[r["index"]]} for r in response.json()["results"]]


def test_repeated_request_is_a_cache_hit_with_no_judge_call(served, judge, cases):
    case = next(cases)
    body = {"model": "full", "query": case.query, "documents": case.documents}
    first = post(served, body).json()
    judge.reset_stats()
    before = metrics(served)
    second = post(served, body).json()
    after = metrics(served)
    assert judge.stats()["requests"] == 0
    assert after["rerank_cache_hits_total"] - before["rerank_cache_hits_total"] == 1
    assert after["rerank_rankings_total"] - before["rerank_rankings_total"] == 1
    assert second["results"] == first["results"] and second["id"] != first["id"]
    assert second["meta"]["billed_units"]["input_tokens"] == 0 < first["meta"]["billed_units"]["input_tokens"]
    assert second["meta"]["tokens"] == first["meta"]["tokens"]


def test_unknown_model_is_a_404_naming_it(served):
    response = post(served, {"model": "gpt-nope", "query": "q", "documents": ["a", "b"]})
    assert response.status_code == 404
    assert "gpt-nope" in response.json()["message"] and "full" in response.json()["message"]


def test_v2_without_model_is_a_400(served):
    response = post(served, {"query": "q", "documents": ["a", "b"]})
    assert response.status_code == 400 and "model" in response.json()["message"]


def test_unknown_path_and_wrong_method_are_json_errors(served):
    missing = httpx.get(served.url + "/v3/rerank", timeout=30)
    assert missing.status_code == 404 and missing.json()["message"]
    wrong = httpx.get(served.url + "/v2/rerank", timeout=30)
    assert wrong.status_code == 405 and wrong.json()["message"]


def test_health(served):
    response = httpx.get(served.url + "/health", timeout=30)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "models": ["full", "slide"], "default_model": "full"}


def _chunks(size: int):
    for _ in range(size // 10_000):
        yield b"x" * 10_000


HTTP_MALFORMED = [
    ("json-not", {"content": b"{not json"}),
    ("text-plain", {"content": b"query=q&documents=a", "headers": {"content-type": "text/plain"}}),
    ("empty", {"content": b""}),
    ("array", {"json": [{"model": "full"}]}),
    ("latin-1", {"content": '{"model":"full","query":"caf\xe9","documents":["a"]}'.encode("latin-1")}),
    ("surrogate", {"content": b'{"model":"full","query":"q","documents":["\\ud800"]}'}),
    ("nested", {"content": b"[" * 50_000}),
    ("no-query", {"json": {"model": "full", "documents": ["a"]}}),
    ("query-number", {"json": {"model": "full", "query": 1, "documents": ["a"]}}),
    ("query-empty", {"json": {"model": "full", "query": " ", "documents": ["a"]}}),
    ("query-long", {"json": {"model": "full", "query": "q" * 40_000, "documents": ["a"]}}),
    ("no-documents", {"json": {"model": "full", "query": "q"}}),
    ("documents-empty", {"json": {"model": "full", "query": "q", "documents": []}}),
    ("documents-string", {"json": {"model": "full", "query": "q", "documents": "a"}}),
    ("document-number", {"json": {"model": "full", "query": "q", "documents": ["a", 2]}}),
    ("document-no-text", {"json": {"model": "full", "query": "q", "documents": [{"title": "a"}]}}),
    ("too-many", {"json": {"model": "full", "query": "q", "documents": ["a"] * 51}}),
    ("top-n-zero", {"json": {"model": "full", "query": "q", "documents": ["a"], "top_n": 0}}),
    ("return-documents-string", {"json": {"model": "full", "query": "q", "documents": ["a"],
                                          "return_documents": "true"}}),
    ("max-tokens-huge", {"json": {"model": "full", "query": "q", "documents": ["a"], "max_tokens_per_doc": 10**9}}),
    ("model-number", {"json": {"model": 5, "query": "q", "documents": ["a"]}}),
    # Decodes, but encoding the field's value again (for the ranked text) passes the recursion limit.
    ("document-deep", {"content": b'{"model":"full","query":"q","rank_fields":["x"],"documents":[{"x":'
                                  + b"[" * 963 + b"]" * 963 + b"}]}"}),
    ("huge", {"content": b'{"model":"full","query":"q","documents":["' + b"a" * 300_000 + b'"]}'}),
    ("huge-chunked", {"chunked": 300_000}),
]


@pytest.mark.parametrize(("name", "kwargs"), HTTP_MALFORMED, ids=[name for name, _ in HTTP_MALFORMED])
def test_malformed_requests_get_a_4xx_message_never_a_500(served, name, kwargs):
    kwargs = {"content": _chunks(kwargs["chunked"])} if "chunked" in kwargs else kwargs
    response = httpx.post(served.url + "/v2/rerank", timeout=30, **kwargs)
    assert 400 <= response.status_code < 500, response.text
    assert response.status_code == (413 if name.startswith("huge") else 400)
    assert isinstance(response.json()["message"], str) and response.json()["message"]
    assert httpx.get(served.url + "/health", timeout=30).status_code == 200
    assert requests_with(500) not in metrics(served)


def test_client_leaving_mid_body_is_a_499_not_a_500(served):
    before = metrics(served)
    host, port = served.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 1000\r\n\r\n{\"query\": ")
        wait_for_metrics(served, lambda m: m.get("rerank_requests_in_flight") == 1)
    after = wait_for_metrics(served, lambda m: m.get(requests_with(499, "/v1/rerank"), 0)
                             > before.get(requests_with(499, "/v1/rerank"), 0))
    assert requests_with(500, "/v1/rerank") not in after


def test_metrics_count_requests_latency_calls_tokens_and_cache(served, cases):
    case = next(cases)
    before = metrics(served)
    body = {"model": "full", "query": case.query, "documents": case.documents[:3]}
    assert [post(served, body).status_code for _ in range(2)] == [200, 200]  # the second from the cache
    assert post(served, {**body, "model": "nope"}).status_code == 404
    values = metrics(served)
    grown = {name: values[name] - before.get(name, 0) for name in values}
    assert grown[requests_with(200)] == 2 and grown[requests_with(404)] == 1
    assert grown['rerank_request_seconds_bucket{le="+Inf"}'] == grown["rerank_request_seconds_count"] == 3
    assert grown["rerank_request_seconds_sum"] > 0 and grown["rerank_ranking_seconds_count"] == 2
    assert grown["rerank_rankings_total"] == 2 and grown["rerank_llm_calls_total"] == 2
    assert grown["rerank_cache_hits_total"] == 1
    assert grown["rerank_llm_prompt_tokens_total"] > 0 and grown["rerank_llm_completion_tokens_total"] > 0
    assert values["rerank_requests_in_flight"] == 0


def test_bearer_key_is_required_and_never_logged(guarded, judge, cases):
    case = next(cases)
    body = {"model": "sliding", "query": case.query, "documents": case.documents[:10]}
    for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": f"Basic {KEY}"},
                    {"Authorization": KEY}):
        response = post(guarded, body, headers=headers)
        assert response.status_code == 401 and response.json()["message"]
    assert httpx.get(guarded.url + "/metrics", timeout=30).status_code == 401
    response = post(guarded, body, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["relevance_score"] == 1.0
    # No --serve-model: one model named after the strategy, the default of v1 requests.
    health = httpx.get(guarded.url + "/health", timeout=30)
    assert health.status_code == 200 and health.json()["models"] == ["sliding"]
    v1 = post(guarded, {"query": case.query, "documents": case.documents[:10]}, path="/v1/rerank",
              headers={"Authorization": f"bearer {KEY}"})
    assert v1.status_code == 200
    assert metrics(guarded, Authorization=f"Bearer {KEY}")[requests_with(401)] == 4
    assert guarded.wait_for_stderr(lambda text: "called" in text)  # --verbose logged the calls
    assert KEY not in guarded.stderr()


def wait_for_metrics(server, predicate, timeout: float = 30.0) -> dict:
    """Poll ``GET /metrics`` until ``predicate(values)`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        values = metrics(server)
        if predicate(values):
            return values
        assert time.monotonic() < deadline, f"metrics never met the condition: {values}"
        time.sleep(0.02)


def send_raw(server, body: dict, path: str = "/v2/rerank") -> socket.socket:
    """A request sent over a bare socket, whose answer is never read: close it to leave."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    payload = json.dumps(body).encode("utf-8")
    connection = socket.create_connection((host, int(port)))
    connection.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                       % (path.encode(), len(payload)) + payload)
    return connection


def test_identical_concurrent_requests_make_one_judge_call(slow, slow_judge, cases):
    case, count = next(cases), 6
    body = {"model": "full", "query": case.query, "documents": case.documents, "top_n": 5}
    slow_judge.reset_stats()
    before = metrics(slow)
    with ThreadPoolExecutor(count) as pool:
        responses = list(pool.map(lambda _: post(slow, body), range(count)))
    assert all(response.status_code == 200 for response in responses)
    assert len({json.dumps(response.json()["results"]) for response in responses}) == 1
    assert_ranked(responses[0].json(), case, 5)
    assert slow_judge.stats()["requests"] == 1
    assert metrics(slow)["rerank_deduplicated_total"] - before["rerank_deduplicated_total"] == count - 1


def test_health_answers_while_a_request_waits_on_the_judge(slow, slow_judge, cases):
    case = next(cases)
    slow_judge.reset_stats()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(post, slow, {"model": "slide", "query": case.query, "documents": case.documents})
        slow_judge.wait_for(lambda stats: stats["in_flight"] >= 1)
        assert httpx.get(slow.url + "/health", timeout=30).status_code == 200
        assert not pending.done()  # three calls of a second each: still ranking
        assert pending.result().status_code == 200


def test_client_that_leaves_cancels_its_ranking(slow, slow_judge, cases):
    leaving, barrier = next(cases), next(cases)
    slow_judge.reset_stats()
    before = metrics(slow)
    connection = send_raw(slow, {"model": "slide", "query": leaving.query, "documents": leaving.documents})
    slow_judge.wait_for(lambda stats: stats["requests"] >= 1)
    connection.close()
    after = wait_for_metrics(slow, lambda m: m["rerank_cancelled_total"] > before["rerank_cancelled_total"])
    assert after.get(requests_with(499), 0) - before.get(requests_with(499), 0) == 1
    # A sliding ranking of the same size takes as long as the cancelled one would have.
    response = post(slow, {"model": "slide", "query": barrier.query, "documents": barrier.documents})
    assert response.status_code == 200
    assert slow_judge.stats()["requests"] - 3 < 3  # the barrier's three, and fewer than a full run's


def test_ranking_goes_on_while_an_identical_request_waits(slow, slow_judge, cases):
    case = next(cases)
    body = {"model": "slide", "query": case.query, "documents": case.documents}
    slow_judge.reset_stats()
    before = metrics(slow)
    connection = send_raw(slow, body)
    slow_judge.wait_for(lambda stats: stats["requests"] >= 1)
    with ThreadPoolExecutor(1) as pool:
        staying = pool.submit(post, slow, body)
        wait_for_metrics(slow, lambda m: m["rerank_deduplicated_total"] > before["rerank_deduplicated_total"])
        connection.close()
        wait_for_metrics(slow, lambda m: m.get(requests_with(499), 0) > before.get(requests_with(499), 0))
        response = staying.result()
    assert response.status_code == 200
    assert_ranked(response.json(), case, 20)
    assert slow_judge.stats()["requests"] == 3
    assert metrics(slow)["rerank_cancelled_total"] == before["rerank_cancelled_total"]
