"""Tests of rerank.cache: keys, the SQLite call cache and the null cache."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sqlite3
import threading

import pytest

from rerank.cache import CACHE_SCHEMA_VERSION, CallCache, NullCache, call_key

MESSAGES = [
    {"role": "system", "content": "You rank passages."},
    {"role": "user", "content": "Query: what is BM25?"},
    {"role": "assistant", "content": "Okay."},
]
PARAMS = {"temperature": 0.0, "max_tokens": 100}
VALUE = {"text": "[2] > [1]", "usage": {"prompt_tokens": 10, "completion_tokens": 5},
         "finish_reason": "stop", "note": "ünïcode ✓"}


@pytest.fixture
def cache(tmp_path):
    with CallCache(tmp_path / "cache.sqlite") as c:
        yield c


# --- call_key -------------------------------------------------------------------------------

def test_key_is_sha256_hex():
    key = call_key("m", MESSAGES, PARAMS)
    assert len(key) == 64 and all(ch in "0123456789abcdef" for ch in key)
    assert CACHE_SCHEMA_VERSION == 1


def test_key_is_deterministic_and_ignores_dict_order():
    reordered_messages = [dict(reversed(list(m.items()))) for m in MESSAGES]
    reordered_params = dict(reversed(list(PARAMS.items())))
    assert call_key("m", MESSAGES, PARAMS) == call_key("m", reordered_messages, reordered_params)


def test_key_changes_with_model():
    assert call_key("m1", MESSAGES, PARAMS) != call_key("m2", MESSAGES, PARAMS)


@pytest.mark.parametrize("index", range(len(MESSAGES)))
def test_key_changes_with_any_message(index):
    changed = [dict(m) for m in MESSAGES]
    changed[index]["content"] += " "
    assert call_key("m", MESSAGES, PARAMS) != call_key("m", changed, PARAMS)
    changed = [dict(m) for m in MESSAGES]
    changed[index]["role"] = "tool"
    assert call_key("m", MESSAGES, PARAMS) != call_key("m", changed, PARAMS)


def test_key_changes_with_message_order_and_count():
    assert call_key("m", MESSAGES, PARAMS) != call_key("m", MESSAGES[::-1], PARAMS)
    assert call_key("m", MESSAGES, PARAMS) != call_key("m", MESSAGES[:-1], PARAMS)


@pytest.mark.parametrize("change", [
    {"temperature": 0.5}, {"max_tokens": 101}, {"seed": 1}, {"max_tokens": None},
])
def test_key_changes_with_any_param(change):
    assert call_key("m", MESSAGES, PARAMS) != call_key("m", MESSAGES, {**PARAMS, **change})


def test_key_accepts_any_unicode():
    messages = [{"role": "user", "content": "caf\u00e9 \u4e2d\u6587 \ud800 \U0001f600"}]
    assert call_key("m", messages, {}) != call_key("m", MESSAGES, {})


def test_key_refuses_credentials_in_params():
    with pytest.raises(ValueError):
        call_key("m", MESSAGES, {"api_key": "sk-secret"})
    with pytest.raises(ValueError):
        call_key("m", MESSAGES, {"base_url": "http://localhost:8000/v1"})


# --- CallCache ------------------------------------------------------------------------------

def test_round_trip(cache):
    key = call_key("m", MESSAGES, PARAMS)
    cache.put(key, VALUE)
    assert cache.get(key) == VALUE
    assert len(cache) == 1


def test_any_unicode_value_round_trips(cache):
    value = {"text": "caf\u00e9 \u4e2d\u6587 \ud800 \U0001f600 \"quoted\"\n"}
    cache.put("k", value)
    assert cache.get("k") == value


def test_miss_returns_none(cache):
    assert cache.get("absent") is None
    assert len(cache) == 0


def test_put_replaces(cache):
    cache.put("k", {"a": 1})
    cache.put("k", {"a": 2})
    assert cache.get("k") == {"a": 2}
    assert len(cache) == 1


def test_values_are_json_only(cache):
    with pytest.raises(TypeError):
        cache.put("k", {"a": object()})
    assert cache.get("k") is None


def test_values_survive_reopening(tmp_path):
    path = tmp_path / "nested" / "dir" / "cache.sqlite"
    with CallCache(path) as cache:
        cache.put("k", VALUE)
    with CallCache(str(path)) as cache:
        assert cache.get("k") == VALUE
    cache.put("k2", {"x": 1})  # a closed cache reopens on use
    assert cache.get("k2") == {"x": 1}
    cache.close()
    cache.close()


def test_schema_and_pragmas(cache):
    cache.put("k", VALUE)
    with sqlite3.connect(cache.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'calls'").fetchone()[0]
    assert "WITHOUT ROWID" in sql
    assert cache._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert cache._conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000


def test_other_connection_sees_put_at_once(tmp_path):
    path = tmp_path / "cache.sqlite"
    with CallCache(path) as writer, CallCache(path) as reader:
        assert reader.get("k") is None
        writer.put("k", VALUE)
        assert reader.get("k") == VALUE


def test_pickled_copy_works(cache):
    cache.put("k", VALUE)
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.path == cache.path
    assert copy.get("k") == VALUE
    copy.put("k2", {"x": 1})
    assert cache.get("k2") == {"x": 1}
    copy.close()


def test_new_process_gets_a_new_connection(cache, monkeypatch):
    cache.put("k", VALUE)
    inherited = cache._conn
    monkeypatch.setattr(os, "getpid", lambda: -1)
    assert cache.get("k") == VALUE
    assert cache._conn is not None and cache._conn is not inherited


def test_threads_share_one_cache(cache):
    errors = []

    def work(t):
        try:
            for i in range(100):
                cache.put(f"{t}-{i}", {"i": i})
                assert cache.get(f"{t}-{i}") == {"i": i}
        except Exception as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) == 400


def _writer(path, worker, barrier):
    cache = CallCache(path)
    barrier.wait()
    for i in range(500):
        cache.put(f"w{worker}-{i}", {"worker": worker, "i": i})
        if i % 10 == 0:
            cache.put(f"shared-{i // 10}", {"worker": worker, "i": i})
    cache.close()


def test_two_processes_write_at_once(tmp_path):
    path = str(tmp_path / "shared" / "cache.sqlite")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(path, w, barrier)) for w in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0]
    with CallCache(path) as cache:
        assert len(cache) == 1050
        for w in range(2):
            for i in range(500):
                assert cache.get(f"w{w}-{i}") == {"worker": w, "i": i}
        for j in range(50):
            value = cache.get(f"shared-{j}")
            assert value is not None and value["i"] == j * 10


# --- NullCache ------------------------------------------------------------------------------

def test_null_cache_stores_nothing():
    with NullCache() as cache:
        cache.put("k", VALUE)
        assert cache.get("k") is None
        assert len(cache) == 0
    cache.close()
    assert pickle.loads(pickle.dumps(cache)).get("k") is None
