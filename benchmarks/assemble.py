"""Assemble BENCHMARKS.md from the result files the benchmark scripts write (benchmarks/results/*.md).

    python benchmarks/assemble.py

Each section names the script that regenerates it; the result files carry their own commands and CPU.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTIONS = [
    ("The headline matrix: two cells re-run give identical nDCG@10 (issue 35)", "headline_rerun.md",
     "rankwise bench examples/bench-headline.yaml --output /tmp/rerun ... (see the section)"),
    ("Methods on small samples: the README's table before the headline matrix (sizes per row)",
     "methods_small_samples.md", "the commands of the sections below; the headline table: python benchmarks/headline.py"),
    ("The full matrix: every method, qwen2.5-0.5b and 1.5b, DL19 + DL20 + SciFact (one command)", "bench_matrix.md",
     "python benchmarks/matrix.py"),
    ("Ten queries per dataset: the methods that move nDCG@10, with significance against BM25", "bench_matrix_10q.md",
     "python benchmarks/matrix.py --config examples/bench-matrix-10q.yaml --output benchmarks/out/matrix-10q "
     "--name bench_matrix_10q"),
    ("The benchmark matrix: five paradigms on one plane (rankwise bench)", "bench_smoke.md",
     "rankwise bench examples/bench-smoke.yaml --output bench-smoke"),
    ("Strong first stages (SPLADE++, TAS-B): does reranking lift them?", "bench_strong.md",
     "rankwise bench examples/bench-strong-first-stages.yaml --output bench-strong"),
    ("The best pipeline on strong first stages (SPLADE++, TAS-B, ada2 fused)", "strong_pipelines.md",
     "python benchmarks/strong_pipelines.py --datasets dl19 dl20 (see below)"),
    ("Adversarial candidates and the defences rankwise offers", "bench_adversarial.md",
     "python benchmarks/matrix.py --config examples/bench-adversarial.yaml --output benchmarks/out/adversarial "
     "--name bench_adversarial"),
    ("Robustness of every method: shuffled input order and an injected adversary (DL19 + DL20)",
     "bench_robustness.md",
     "python benchmarks/matrix.py --config examples/bench-robustness.yaml --output benchmarks/out/robustness "
     "--name bench_robustness"),
    ("Retrieval and evaluation", "retrieval.md", "python benchmarks/retrieval.py"),
    ("Pointwise reranking, qwen2.5-0.5b: effectiveness and cost", "pointwise_05b.md",
     "python benchmarks/pointwise.py --datasets dl19 dl20 --models qwen2.5-0.5b "
     "--methods pointwise.yes_no pointwise.graded --top-k 20 --max-queries 10 --table results/pointwise_05b.md"),
    ("Pointwise reranking, qwen2.5-1.5b: effectiveness and cost", "pointwise_15b.md",
     "python benchmarks/pointwise.py --datasets dl19 dl20 --models qwen2.5-1.5b "
     "--methods pointwise.yes_no pointwise.graded --top-k 20 --max-queries 5 --table results/pointwise_15b.md"),
    ("Pointwise prompt templates: passage-first against query-first", "templates.md",
     "python benchmarks/pointwise.py --datasets dl19 --models qwen2.5-0.5b --methods pointwise.yes_no "
     "--variants short query_first --top-k 20 --max-queries 10 --engine transformers "
     "--out out/templates --table results/templates.md"),
    ("Speed: rankwise against a plain transformers loop, bf16 (fast on this CPU)", "speed_pointwise_bf16.md",
     "python benchmarks/speed_pointwise.py --dataset dl19 --model qwen2.5-0.5b --top-k 20 --max-queries 12 "
     "--table results/speed_pointwise_bf16.md"),
    ("Speed: rankwise against a plain transformers loop, fp32", "speed_pointwise_fp32.md",
     "python benchmarks/speed_pointwise.py --dataset dl19 --model qwen2.5-0.5b --top-k 20 --max-queries 5 "
     "--dtype float32 --table results/speed_pointwise_fp32.md"),
    ("Engines on this machine", "engines.md", "rankwise env --model qwen2.5-0.5b --model smollm2-135m"),
    ("Pairwise and setwise", "pairwise_setwise.md", "python benchmarks/comparison_methods.py (see below)"),
    ("Pairwise and setwise on qwen2.5-1.5b, DL19 and DL20", "pairwise_setwise_15b.md",
     "python benchmarks/comparison_methods.py methods --model qwen2.5-1.5b --datasets dl19 dl20 --top-k 10 --k 10 "
     "--max-queries 3 --passage-tokens 64 --reasoning-tokens 64 --threads 1 --table results/pairwise_setwise_15b.md"),
    ("Pairwise and setwise on qwen2.5-0.5b, BM25 top-20", "pairwise_setwise_top20.md",
     "python benchmarks/comparison_methods.py methods --model qwen2.5-0.5b --datasets dl19 dl20 --methods "
     "setwise.heapsort pairwise.heapsort setwise.bubblesort pairwise.sliding setwise.reasoning pairwise.allpairs "
     "--top-k 20 --k 10 --max-queries 3 --passage-tokens 64 --reasoning-tokens 64 --threads 1 "
     "--out out/comparison_top20 --table results/pairwise_setwise_top20.md"),
    ("Side by side with llm-rankers (pairwise and setwise heap sort, SmolLM2-135M)", "llm_rankers.md",
     "python benchmarks/comparison_methods.py llm-rankers --model smollm2-135m --dataset dl19 --top-k 20 --k 10 "
     "--max-queries 5 --passage-tokens 64 --threads 1 --out out/llm_rankers --table results/llm_rankers.md"),
    ("Side by side with llm-rankers on qwen2.5-0.5b (through an exact llama view of the checkpoint)",
     "llm_rankers_qwen.md",
     "python benchmarks/comparison_methods.py llm-rankers --model qwen2.5-0.5b --dataset dl19 --top-k 20 --k 10 "
     "--max-queries 5 --passage-tokens 64 --threads 1 --out out/llm_rankers_qwen --table results/llm_rankers_qwen.md"),
    ("rankwise beside llm-rankers, rerankers and rank_llm in one matrix (rankwise bench with peers)", "bench_peers.md",
     "rankwise bench examples/bench-peers.yaml --output bench-peers"),
    ("The same peers on an AMD EPYC (no AMX), with rerankers' RankGPT", "bench_peers_epyc.md",
     "rankwise bench examples/bench-peers.yaml --output bench-peers; "
     "rankwise bench examples/bench-peers-llamacpp.yaml --output bench-peers-llamacpp"),
    ("Pairwise with the probability rule (qwen2.5-0.5b)", "pairwise_probability.md",
     "python benchmarks/comparison_methods.py methods --model qwen2.5-0.5b --datasets dl19 dl20 --methods "
     "pairwise.allpairs pairwise.heapsort pairwise.sliding --rule probability --top-k 10 --k 10 --max-queries 5 "
     "--passage-tokens 64 --threads 1 --out out/comparison_probability --table results/pairwise_probability.md"),
    ("Listwise and groupwise", "listwise_groupwise.md", "python benchmarks/listwise_groupwise.py (see below)"),
    ("Embedding rerankers (cosine, E2Rank) and attention (ICR)", "embedding_icr.md",
     "python benchmarks/embedding_icr.py embedding|icr (see below)"),
    ("A cascade against its best single stage", "cascade.md", "python benchmarks/cascade.py (see below)"),
    ("The vLLM engine", "vllm.md", "python -m pytest -q -s -m 'slow or not slow' tests/models/test_vllm_engine.py"),
    ("Ray executor overhead", "ray_overhead.md", "python benchmarks/ray_overhead.py (see below)"),
    ("Capacity: hours for large query sets", "capacity.md", "python benchmarks/capacity.py"),
    ("HTTP service under load", "serve.md", "python benchmarks/load_test.py (see below)"),
    ("Cross-encoder training: SciFact objectives and TREC DL transfer (all-MiniLM-L6-v2 init)", "train_crossencoder.md",
     "python benchmarks/train_crossencoder.py (see below)"),
    ("GRPO for the groupwise format (SmolLM2-135M + LoRA, TRL)", "train_grpo.md",
     "python benchmarks/train_grpo.py --minutes 18 --eval-queries 10"),
    ("Training causal-LM rerankers: pointwise SFT and contrastive training of qwen2.5-0.5b (issue 31)",
     "training_sft.md", "bash benchmarks/train_sft.sh, then python benchmarks/train_sft_table.py"),
    ("Training causal-LM rerankers (2): listwise SFT, FIRST and distillation of qwen2.5-0.5b (issue 31)",
     "training_listwise.md", "bash benchmarks/train_listwise.sh, then python benchmarks/train_listwise_table.py runs"),
    ("The GRPO recipes on qwen2.5-0.5b: GroupRank, ERank, ProRank, Rank-R1, ReasonRank (issue 32)",
     "train_recipes.md", "OUT=runs bash benchmarks/train_recipes.sh, then python benchmarks/train_recipes_table.py runs"),
    ("Memory of loading a model (issue 36)", "memory_load.md", "python benchmarks/memory_load.py"),
    ("Training embedding models as listwise rerankers (E2Rank, issue 33)", "e2rank_training.md",
     "bash benchmarks/train_e2rank.sh (trains on SciFact and DL20, then runs python benchmarks/train_e2rank.py)"),
    ("Reliability of the service: one large request, overload, slow clients, control tokens (issue 28)",
     "reliability.md", "python benchmarks/stall_test.py ... and python benchmarks/control_tokens.py ... (see the section)"),
    ("Install, demo and model cache; PyTerrier and serving shapes (issue 29)", "ecosystem.md",
     "commands in the section"),
    ("Your own collection: persistent embeddings and query coverage (issue 36)", "own_collection.md",
     "commands in the section"),
    ("Batch invariance of the transformers engine: a prompt's scores do not depend on its batch",
     "batch_invariance.md", "python benchmarks/batch_invariance.py --models smollm2-135m qwen2.5-0.5b"),
    ("Global orders from comparisons: TSPRank, TourRank and Bradley-Terry (issue 34)", "aggregation.md",
     "python benchmarks/aggregation.py (commands in the section)"),
    ("Batching across queries: the same step of many queries in one engine call", "query_batching.md",
     "python benchmarks/query_batching.py --model qwen2.5-0.5b --queries 10 --top-k 20 "
     "--methods pointwise.yes_no listwise.window"),
]


def main() -> None:
    parts = ["# Benchmarks\n",
             "Every figure below names the CPU it ran on and the command that produced it. The machines are "
             "2-core VMs of different CPU classes (see ../shared/MODELS.md); figures from one machine are only "
             "compared with figures from the same run. Regenerate this file with `python benchmarks/assemble.py` "
             "after re-running a section's command.\n"]
    for title, name, command in SECTIONS:
        path = HERE / "results" / name
        if not path.is_file():
            continue
        body = path.read_text(encoding="utf-8").strip()
        if body.startswith("# "):
            body = body.split("\n", 1)[1].strip()
        body = "\n".join("#" + line if line.startswith("#") else line for line in body.splitlines())
        parts.append(f"## {title}\n\nCommand: `{command}`\n\n{body}\n")
    (HERE.parent / "BENCHMARKS.md").write_text("\n".join(parts), encoding="utf-8")


if __name__ == "__main__":
    main()
