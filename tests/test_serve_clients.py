"""Real clients of Cohere's rerank API pointed at ``rerank serve`` (``--serve-model full=full``) in
front of the oracle judge: the ``cohere`` SDK (v2 and v1), langchain-cohere's ``CohereRerank``,
LlamaIndex's Cohere rerank postprocessor, and the README's three examples run as they are."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import REPO, data_dir
from llm_server import start_server
from serve_process import ServeProcess, dl19_cases

README_URL = "http://127.0.0.1:8080"


@pytest.fixture(scope="module")
def dl19_data():
    for package in ("starlette", "uvicorn"):  # the serve extra
        pytest.importorskip(package)
    return data_dir("dl19")


@pytest.fixture(scope="module")
def case(dl19_data):
    """A DL19 query and its BM25 top 20, its judged-best passage not BM25's first."""
    return dl19_cases(dl19_data)[0]


@pytest.fixture(scope="module")
def served(dl19_data):
    with start_server("oracle", data_dir=dl19_data) as judge, ServeProcess(
            "--model", "judge", "--base-url", judge.base_url, "--serve-model", "full=full", "--no-cache") as server:
        yield server


def assert_best_first(indices, scores, case, count) -> None:
    assert len(indices) == len(set(indices)) == count
    assert all(a > b for a, b in zip(scores, scores[1:]))
    assert case.grades[indices[0]] == case.best


def test_cohere_v2_client(served, case):
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key="unused", base_url=served.url)
    response = client.rerank(model="full", query=case.query, documents=case.documents)
    assert_best_first([r.index for r in response.results], [r.relevance_score for r in response.results], case, 20)
    top = client.rerank(model="full", query=case.query, documents=case.documents, top_n=5, max_tokens_per_doc=512)
    assert [r.index for r in top.results] == [r.index for r in response.results][:5]
    assert response.id and response.meta.billed_units.input_tokens > 0
    with pytest.raises(cohere.core.ApiError) as caught:  # an unknown model
        client.rerank(model="nope", query=case.query, documents=case.documents[:2])
    assert caught.value.status_code == 404


def test_cohere_v1_client_returns_documents(served, case):
    cohere = pytest.importorskip("cohere")
    client = cohere.Client(api_key="unused", base_url=served.url)
    response = client.rerank(query=case.query, documents=case.documents, top_n=3, return_documents=True)
    indices = [r.index for r in response.results]
    assert_best_first(indices, [r.relevance_score for r in response.results], case, 3)
    assert [r.document.text for r in response.results] == [case.documents[i] for i in indices]
    objects = [{"text": text, "docid": f"d{number}"} for number, text in enumerate(case.documents)]
    response = client.rerank(model="full", query=case.query, documents=objects, top_n=2, return_documents=True)
    assert [r.document.model_dump() for r in response.results] == [objects[r.index] for r in response.results]
    assert all(r.document is None for r in client.rerank(query=case.query, documents=case.documents[:3]).results)


def test_langchain_cohere_rerank(served, case):
    pytest.importorskip("langchain_cohere")
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    documents = [Document(page_content=text, metadata={"n": number}) for number, text in enumerate(case.documents)]
    reranker = CohereRerank(model="full", top_n=4, cohere_api_key="unused", base_url=served.url)
    compressed = reranker.compress_documents(documents, query=case.query)
    indices = [document.metadata["n"] for document in compressed]
    assert_best_first(indices, [document.metadata["relevance_score"] for document in compressed], case, 4)
    everything = reranker.rerank(case.documents, case.query, top_n=None)
    assert [result["index"] for result in everything][:4] == indices and len(everything) == 20


def test_llamaindex_cohere_rerank(served, case):
    pytest.importorskip("llama_index.postprocessor.cohere_rerank")
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    nodes = [NodeWithScore(node=TextNode(text=text, id_=str(number)), score=0.0)
             for number, text in enumerate(case.documents)]
    reranker = CohereRerank(model="full", top_n=5, api_key="unused", base_url=served.url)
    ranked = reranker.postprocess_nodes(nodes, QueryBundle(case.query))
    assert_best_first([int(node.node.node_id) for node in ranked], [node.score for node in ranked], case, 5)


def readme_examples() -> dict:
    """The README's ``# serve example: NAME`` python blocks, by name."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return dict(re.findall(r"```python\n# serve example: (\w+)\n(.*?)```", text, re.S))


@pytest.mark.parametrize(("name", "package"), [("cohere", "cohere"), ("langchain", "langchain_cohere"),
                                               ("llamaindex", "llama_index.postprocessor.cohere_rerank")])
def test_readme_example_runs(served, name, package):
    examples = readme_examples()
    assert name in examples, f"README.md has no python block starting '# serve example: {name}'"
    assert README_URL in examples[name] and 'model="full"' in examples[name]
    pytest.importorskip(package)
    code = examples[name].replace(README_URL, served.url)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 2, run.stdout  # top_n=2
