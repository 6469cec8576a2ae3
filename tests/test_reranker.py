"""The Python API: Reranker over real test servers and over scripted backends."""

import asyncio
import pickle
import random
from dataclasses import asdict

import pytest

from llm_server import start_server
from rerank.answers import Constraint
from rerank import Candidate, Query, Request, Reranker, RerankerConfig
from rerank.backends import Capabilities, Completion
from rerank.errors import ConfigError
from rerank.tokens import EstimateCounter, TiktokenCounter, count_message_tokens, get_encoding


def make_request(qid="q1", n=100, words=30, seed=0):
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(500)]
    return Request(Query(qid=qid, text=f"query {qid}"),
                   [Candidate(f"{qid}-d{i}", " ".join(rng.choices(vocabulary, k=words)), score=100.0 - i)
                    for i in range(n)])


class ScriptedBackend:
    """A backend answering with a function of the passages it is shown; records every prompt."""

    model = "scripted"

    def __init__(self, answer, delay=0.0, finish_reason="stop", counter=None):
        self.answer, self.delay, self.finish_reason = answer, delay, finish_reason
        self.prompts, self.in_flight, self.max_in_flight = [], 0, 0
        self.counter = counter or EstimateCounter()

    async def prepare(self):
        return Capabilities()

    async def complete(self, messages, params, constraint=None, first_token_labels=None):
        self.prompts.append((messages, params))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay(messages) if callable(self.delay) else self.delay)
        finally:
            self.in_flight -= 1
        return Completion(self.answer(messages), 10, 5, self.finish_reason, 0.001, 1)

    def token_counter(self):
        return self.counter

    async def aclose(self):
        pass


def ids_in(messages):
    return [int(m["content"][1:m["content"].index("]")]) for m in messages
            if m["role"] == "user" and m["content"].startswith("[")]


def reverse_answer(messages):
    return " > ".join(f"[{i}]" for i in reversed(ids_in(messages)))


async def test_sliding_reverses_within_windows_and_scores_strictly_decrease():
    backend = ScriptedBackend(reverse_answer)
    reranker = Reranker(model="m", cache=None, llm=backend)
    request = make_request()
    result = await reranker.rerank(request)
    assert len(result.calls) == 9 == result.rounds == len(backend.prompts)
    assert sorted(c.docid for c in result.candidates) == sorted(c.docid for c in request.candidates)
    scores = [c.score for c in result.candidates]
    assert all(a > b for a, b in zip(scores, scores[1:]))
    assert [c.text for c in result.candidates[:1]] != [request.candidates[0].text]
    assert all(call.parse_status == "ok" and not call.cached for call in result.calls)


async def test_top_k_keeps_the_rest_beneath_in_first_stage_order():
    backend = ScriptedBackend(reverse_answer)
    reranker = Reranker(model="m", cache=None, llm=backend, top_k=30)
    request = make_request()
    result = await reranker.rerank(request)
    assert len(result.calls) == 2  # windows (10, 30) and (0, 20)
    assert [c.docid for c in result.candidates[30:]] == [c.docid for c in request.candidates[30:]]
    assert {c.docid for c in result.candidates[:30]} == {c.docid for c in request.candidates[:30]}


async def test_full_ranking_shortens_passages_evenly_to_fit_the_context():
    if get_encoding() is None:
        pytest.skip("tiktoken offline encoding not available")
    counter = TiktokenCounter()
    backend = ScriptedBackend(reverse_answer, counter=counter)
    reranker = Reranker(model="m", cache=None, llm=backend, strategy="full", context_size=2000, top_k=50,
                        max_passage_words=None)
    request = make_request(n=50, words=60)
    request.candidates[0].text = "short passage"
    result = await reranker.rerank(request)
    messages, params = backend.prompts[0]
    assert len(result.calls) == 1 and len(ids_in(messages)) == 50
    assert count_message_tokens(messages, counter.count) <= 2000 - params["max_tokens"]
    passages = {int(m["content"][1:m["content"].index("]")]): m["content"] for m in messages
                if m["role"] == "user" and m["content"].startswith("[")}
    assert passages[1] == "[1] short passage"  # short passages are not cut
    lengths = [counter.count(text) for i, text in passages.items() if i != 1]
    assert max(lengths) - min(lengths) <= 3  # the long ones are cut to the same length
    # Without the budget squeeze the prompt is sent whole.
    backend.prompts.clear()
    await Reranker(model="m", cache=None, llm=backend, strategy="full").rerank(request)
    assert count_message_tokens(backend.prompts[0][0], counter.count) > 2000


async def test_a_prompt_over_budget_in_bytes_but_not_in_tokens_is_sent_whole():
    if get_encoding() is None:
        pytest.skip("tiktoken offline encoding not available")
    counter = TiktokenCounter()
    backend = ScriptedBackend(reverse_answer, counter=counter)
    request = make_request(n=20, words=60)
    reranker = Reranker(model="m", cache=None, llm=backend, strategy="full", max_passage_words=None)
    whole = await reranker.rerank(request)
    sent = backend.prompts[0][0]
    tokens, size = counter.count_messages(sent), sum(len(m["content"].encode()) for m in sent)
    # A budget between the prompt's tokens and its bytes: it must be counted, and it fits.
    budget = (tokens + size) // 2
    backend.prompts.clear()
    squeezed = Reranker(model="m", cache=None, llm=backend, strategy="full", max_passage_words=None,
                        context_size=budget + whole.calls[0].window_size * 8 + 32)
    await squeezed.rerank(request)
    assert backend.prompts[0][0] == sent


async def test_without_a_cache_no_cache_key_is_computed(monkeypatch):
    import rerank.runner.cached_backend

    def refuse(*_):
        raise AssertionError("call_key computed for --no-cache")

    monkeypatch.setattr(rerank.runner.cached_backend, "call_key", refuse)
    backend = ScriptedBackend(reverse_answer)
    result = await Reranker(model="m", cache=None, llm=backend).rerank(make_request(n=30))
    assert len(result.calls) == 2  # windows 10-30 and 0-20


async def test_prepare_loads_the_counter_and_checks_the_endpoint():
    class Checked(ScriptedBackend):
        checked = counted = 0

        async def prepare(self):
            self.checked += 1
            return Capabilities()

        def token_counter(self):
            self.counted += 1
            return super().token_counter()

    backend = Checked(reverse_answer)
    await Reranker(model="m", cache=None, llm=backend).prepare()
    assert backend.checked == 1 and backend.counted == 1


async def test_results_come_in_input_order_and_concurrency_is_bounded():
    # Earlier queries answer slower, so they finish last.
    requests = [make_request(f"q{i}", n=25) for i in range(12)]
    delays = {f"query q{i}": 0.05 * (12 - i) / 12 for i in range(12)}

    def delay(messages):
        return next(v for k, v in delays.items() if k + "." in messages[1]["content"])

    backend = ScriptedBackend(reverse_answer, delay=delay)
    reranker = Reranker(model="m", cache=None, llm=backend, concurrency=4)
    results = await reranker.rerank_batch(requests)
    assert [r.query.qid for r in results] == [f"q{i}" for i in range(12)]
    assert backend.max_in_flight <= 4


async def test_cache_answers_a_rerun_and_skips_cut_off_answers(tmp_path):
    backend = ScriptedBackend(reverse_answer)
    reranker = Reranker(model="m", cache=str(tmp_path / "c.sqlite"), llm=backend)
    request = make_request()
    first = await reranker.rerank(request)
    second = await reranker.rerank(request)
    assert len(backend.prompts) == 9
    assert all(c.cached and c.attempts == 0 and c.latency == 0 for c in second.calls)
    assert [c.docid for c in first.candidates] == [c.docid for c in second.candidates]
    assert second.usage.prompt_tokens == first.usage.prompt_tokens
    cut = ScriptedBackend(reverse_answer, finish_reason="length")
    cut.model = "another-model"  # calls are cached under the backend's model name
    reranker = Reranker(model="m2", cache=str(tmp_path / "c.sqlite"), llm=cut)
    await reranker.rerank(request)
    await reranker.rerank(request)
    assert len(cut.prompts) == 18  # answers cut off by max_tokens are never cached


async def test_parse_repairs_are_counted():
    answers = iter(["[2] > [2] > [1]", "I refuse.", "[1] > [3] > [2]"])
    backend = ScriptedBackend(lambda messages: next(answers))
    reranker = Reranker(model="m", cache=None, llm=backend, window=3, step=1)
    result = await reranker.rerank(make_request(n=5))
    usage = result.usage
    assert (usage.parse_ok, usage.parse_repaired, usage.parse_unparseable) == (1, 1, 1)


async def test_against_a_real_server_with_the_rankzephyr_prompt():
    with start_server("reverse") as server:
        async with Reranker(model="m", base_url=server.base_url, cache=None, prompt="rankzephyr") as reranker:
            results = await reranker.rerank_batch([make_request(f"q{i}", n=20) for i in range(3)])
    for result in results:
        assert len(result.calls) == 1 and result.calls[0].prompt_tokens > 0
        # One window of 20 answered in reverse: the last candidate comes first.
        assert result.candidates[0].docid.endswith("-d19")


def test_config_round_trip_and_pickle():
    config = RerankerConfig(model="m", base_url="http://127.0.0.1:9/v1", strategy="full", cache=None)
    reranker = Reranker(config)
    again = Reranker.from_config(asdict(reranker.config))
    assert again.config == config
    clone = pickle.loads(pickle.dumps(reranker))
    assert clone.config == config
    with pytest.raises(ConfigError, match="unknown reranker option 'api_key'"):
        RerankerConfig.from_dict({"model": "m", "api_key": "secret"})


@pytest.mark.parametrize("options,message", [
    (dict(strategy="nonesuch"), "unknown strategy"), (dict(window=10, step=10), "--step"),
    (dict(top_k=0), "--top-k"), (dict(prompt="nope"), "unknown prompt"),
    (dict(backend="nope"), "unknown backend"), (dict(concurrency=0), "--concurrency"),
])
def test_invalid_options(options, message):
    with pytest.raises(ConfigError, match=message):
        Reranker(model="m", cache=None, base_url="http://127.0.0.1:9/v1", **options)


async def test_constrained_calls_pass_the_window_size_and_are_cached_apart(tmp_path):
    sizes = []

    class Constrainable(ScriptedBackend):
        async def prepare(self):
            return Capabilities(constrain=True)

        async def complete(self, messages, params, constraint=None, first_token_labels=None):
            sizes.append(constraint and constraint.size)
            return await super().complete(messages, params)

    cache = str(tmp_path / "c.sqlite")
    request = make_request(n=25)
    await Reranker(model="m", cache=cache, llm=Constrainable(reverse_answer)).rerank(request)
    assert sizes == [None, None]  # off by default for this backend
    await Reranker(model="m", cache=cache, llm=Constrainable(reverse_answer), constrained=True).rerank(request)
    assert sizes == [None, None, 20, 15]  # not answered from the unconstrained entries
    with pytest.raises(ConfigError, match="cannot constrain"):
        await Reranker(model="m", cache=None, llm=ScriptedBackend(reverse_answer), constrained=True).prepare()


@pytest.mark.parametrize("owned_by,constrained", [("vllm", True), ("llamacpp", True), ("sglang", True),
                                                  ("openai", False), ("tests", False)])
async def test_the_endpoint_check_turns_on_constraints_and_learns_the_context_of_known_servers(
        owned_by, constrained):
    with start_server("identity", owned_by=owned_by, max_model_len=6000) as server:
        reranker = Reranker(model="judge", base_url=server.base_url, cache=None)
        calls = []
        complete = reranker.backend.complete

        async def recording(messages, params, **options):
            calls.append(options)
            return await complete(messages, params, **options)

        reranker.backend.complete = recording
        assert not reranker.constrained
        try:
            await reranker.prepare()
            assert reranker.constrained is constrained
            assert reranker.context_size() == 6000
            await reranker.rerank(make_request(n=20))
            # --no-constrained wins over what the server is.
            forced = Reranker(model="judge", base_url=server.base_url, cache=None, constrained=False)
            await forced.prepare()
            assert not forced.constrained and forced.backend.constrained_default is constrained
            await forced.aclose()
        finally:
            await reranker.aclose()
    assert calls[0]["constraint"] == (Constraint(20, 20) if constrained else None)
