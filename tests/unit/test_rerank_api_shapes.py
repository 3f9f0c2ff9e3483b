"""The rerank-api engine's pure parts: the shape told by the URL, the body of each shape, every shape's answer
read back in input order, Retry-After and server error messages (no server, no torch)."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from rankwise.errors import InputError, RankwiseError
from rankwise.llm.engines.http import retry_after, server_message
from rankwise.llm.engines.remote_rerank import endpoint, load_remote_reranker, parse_scores, request_body

URL = "http://127.0.0.1:9/rerank"


@pytest.mark.parametrize("url, shape, expected", [
    ("http://h:1/v1/rerank", "auto", ("http://h:1/v1/rerank", "cohere")),
    ("http://h:1/v2/rerank/", "auto", ("http://h:1/v2/rerank", "cohere-v2")),
    ("https://api.jina.ai/v1/rerank", "auto", ("https://api.jina.ai/v1/rerank", "cohere")),
    ("http://h:1/score", "auto", ("http://h:1/score", "vllm-score")),
    ("http://h:1/v1/score", "auto", ("http://h:1/v1/score", "vllm-score")),
    ("http://h:1/rerank", "auto", ("http://h:1/rerank", None)),  # TEI or Cohere-shaped: probed
    ("http://h:1", "tei", ("http://h:1/rerank", "tei")),
    ("http://h:1/", "cohere-v2", ("http://h:1/v2/rerank", "cohere-v2")),
    ("http://h:1/custom/path", "jina", ("http://h:1/custom/path", "jina")),
])
def test_the_url_tells_the_shape(url, shape, expected):
    assert endpoint(url, shape) == expected


def test_a_url_that_does_not_tell_needs_the_shape():
    with pytest.raises(InputError, match="cannot tell the rerank API from the URL"):
        endpoint("http://h:1/api", "auto")
    with pytest.raises(InputError, match="unknown rerank API shape 'cohere3'"):
        endpoint("http://h:1/v1/rerank", "cohere3")
    with pytest.raises(InputError, match="needs an http"):
        endpoint("h:1/v1/rerank", "auto")


def test_each_shape_asks_for_every_document():
    docs = ["a", "b", "c"]
    assert request_body("cohere", "m", "q", docs) == {"model": "m", "query": "q", "documents": docs, "top_n": 3,
                                                      "return_documents": False}
    assert request_body("jina", None, "q", docs) == {"query": "q", "documents": docs, "top_n": 3,
                                                     "return_documents": False}
    assert request_body("cohere-v2", "m", "q", docs) == {"model": "m", "query": "q", "documents": docs, "top_n": 3}
    assert request_body("tei", "m", "q", docs) == {"query": "q", "texts": docs, "raw_scores": False,
                                                   "return_text": False, "truncate": True}
    assert request_body("vllm-score", "m", "q", docs) == {"model": "m", "text_1": "q", "text_2": docs}


def test_cohere_and_jina_answers_sorted_by_score_come_back_in_input_order():
    cohere_v2 = {"id": "x", "results": [{"index": 2, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.5},
                                        {"index": 1, "relevance_score": 0.1}],
                 "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1},
                          "tokens": {"input_tokens": 42, "output_tokens": 0}}}
    assert parse_scores(cohere_v2, 3, URL) == ([0.5, 0.1, 0.9], 42)
    jina = {"model": "jina-reranker-v2-base-multilingual", "usage": {"total_tokens": 17},
            "results": [{"index": 1, "document": {"text": "b"}, "relevance_score": 0.8},
                        {"index": 0, "document": {"text": "a"}, "relevance_score": 0.2}]}
    assert parse_scores(jina, 2, URL) == ([0.2, 0.8], 17)


def test_tei_and_vllm_score_answers_are_read():
    tei = [{"index": 1, "score": 0.99}, {"index": 0, "score": 0.01}]
    assert parse_scores(tei, 2, URL) == ([0.01, 0.99], 0)
    vllm = {"id": "score-1", "object": "list", "created": 1, "model": "m",
            "data": [{"index": 0, "object": "score", "score": 3.5}, {"index": 1, "object": "score", "score": -1}],
            "usage": {"prompt_tokens": 30, "total_tokens": 30, "completion_tokens": 0}}
    assert parse_scores(vllm, 2, URL) == ([3.5, -1.0], 30)


@pytest.mark.parametrize("answer, message", [
    ({"results": [{"index": 0, "relevance_score": 0.5}]}, "scored 1 of the 2 documents"),  # a top_n answer
    ([{"index": 0, "score": 1}, {"index": 0, "score": 2}], "index 0 is out of range or repeated"),
    ([{"index": 5, "score": 1}, {"index": 0, "score": 2}], "index 5 is out of range"),
    ([{"index": 0, "score": "high"}, {"index": 1, "score": 2}], "without an integer index and a numeric score"),
    ({"object": "error", "message": "boom"}, "not a rerank answer"),
])
def test_an_answer_that_does_not_score_every_document_is_an_error(answer, message):
    with pytest.raises(RankwiseError, match=message) as err:
        parse_scores(answer, 2, URL)
    assert URL in str(err.value)


def test_server_messages_are_read_from_each_error_shape():
    def response(status, **kwargs):
        return httpx.Response(status, **kwargs)

    assert server_message(response(422, json={"error": "batch size 64 > maximum allowed batch size 32",
                                              "error_type": "Validation"})) == \
        "batch size 64 > maximum allowed batch size 32"
    assert server_message(response(400, json={"error": {"message": "bad model", "code": 400}})) == "bad model"
    assert server_message(response(400, json={"object": "error", "message": "too long"})) == "too long"
    assert server_message(response(422, json={"detail": [{"msg": "field required"}]})) == \
        "[{'msg': 'field required'}]"
    assert server_message(response(502, text="Bad Gateway from the proxy")) == "Bad Gateway from the proxy"


def test_retry_after_is_read_in_seconds_or_as_a_date():
    assert retry_after("2") == 2.0 and retry_after("0.5") == 0.5
    assert retry_after("3600") == 60.0  # capped
    assert retry_after(None) is None and retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.0 <= retry_after(later) <= 5.0


def test_options_are_checked_and_the_key_only_comes_from_the_environment():
    with pytest.raises(InputError, match="no option api_key .*environment variable"):
        load_remote_reranker("http://h:1/v1/rerank", api_key="secret")
    with pytest.raises(InputError, match="needs a URL"):
        load_remote_reranker("bge-reranker")
    with pytest.raises(InputError, match="max_documents must be a positive integer"):
        load_remote_reranker("http://h:1/v1/rerank", max_documents=0)
    named = load_remote_reranker("bge-reranker", base_url="http://h:1/v1/rerank", batch_size=16)
    assert (named.name, named.url, named.model) == ("bge-reranker", "http://h:1/v1/rerank", "bge-reranker")
    anonymous = load_remote_reranker("http://h:1/v1/rerank")
    assert (anonymous.name, anonymous.model) == ("http://h:1/v1/rerank", None)
