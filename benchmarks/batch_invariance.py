"""Batch invariance of the transformers engine: what changes the bits, and what the fix costs.

    python benchmarks/batch_invariance.py --models smollm2-135m qwen2.5-0.5b --dtypes bfloat16 float32

Part 1 (cause): does a row's result change with (a) the GEMM row count M, (b) the prefix split point,
(c) the right-padding width, (d) the number of rows in the micro-batch? Measured with the engine's own
passes on pointwise prompts.
Part 2 (cost): pointwise.yes_no prompts of 3 DL19 queries x 20 BM25 passages, scored one call per query
and in one merged call, by the engine before the fix (``--old-ref``, loaded from git) and after it;
seconds (best of ``--repeats``) and how many prompts' scores differ between the two ways of calling.
Writes benchmarks/results/batch_invariance.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

from rankwise.cli.common import cpu_name
from rankwise.data import load_dataset
from rankwise.llm import load_backend
from rankwise.methods import build_method

HERE = Path(__file__).resolve().parent
YES_NO = ["Yes|yes| Yes", "No|no| No"]


def old_engine_class(ref: str):
    """TransformersBackend as it was at ``ref`` (before the fix), imported from git."""
    source = subprocess.run(["git", "-C", str(HERE.parent), "show", f"{ref}:src/rankwise/llm/hf.py"],
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("rankwise_old_hf")
    # the old file imports rankwise.llm.base, which the redesign renamed rankwise.llm.protocol
    import rankwise.llm.protocol as protocol

    sys.modules.setdefault("rankwise.llm.base", protocol)
    exec(compile(source, "old_hf.py", "exec"), module.__dict__)
    return module.TransformersBackend


def as_old(backend, old_cls):
    """The same loaded model behind the old engine's code (no second load)."""
    old = copy.copy(backend)
    old.__class__ = old_cls
    return old


# -- part 1 -----------------------------------------------------------------------------------------
def gemm_rows_changed(dtype: torch.dtype, k: int, n: int) -> str:
    """For each row count M: how many of the M rows get other bits than in a GEMM of 1024 rows."""
    torch.manual_seed(0)
    w, x = torch.randn(n, k).to(dtype), torch.randn(1024, k).to(dtype)
    ref = torch.nn.functional.linear(x, w)
    out = []
    for m in (1, 2, 4, 8, 16, 32, 64, 96, 128, 256, 512):
        bad = int((torch.nn.functional.linear(x[:m], w) != ref[:m]).any(dim=1).sum())
        out.append(f"{m}:{bad}")
    return " ".join(out)


@torch.inference_mode()
def pass_hidden(b, ids, shared, width, rows):
    """Last-token hidden state of ``ids`` run after a prefix of ``shared`` tokens, right-padded to
    ``width``, as row 0 of ``rows`` identical rows (the old engine's run_suffixes, 2D mask)."""
    cache = b.encode_prefix(ids[:shared]) if shared else None
    suffix = ids[shared:]
    input_ids = torch.full((rows, width), b._pad_id, dtype=torch.long)
    mask = torch.zeros((rows, shared + width), dtype=torch.long)
    mask[:, :shared] = 1
    input_ids[:, :len(suffix)] = torch.tensor(suffix)
    mask[:, shared:shared + len(suffix)] = 1
    kwargs = {}
    if cache is not None:
        cache = copy.deepcopy(cache)
        cache.batch_repeat_interleave(rows)
        kwargs[b._cache_arg] = cache
    positions = torch.arange(shared, shared + width).unsqueeze(0).expand(rows, -1)
    out = b._decoder(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                     use_cache=cache is not None, **kwargs).last_hidden_state
    return out[0, len(suffix) - 1].float()


def cause_rows(b, prompt: str) -> list[str]:
    ids = b._tokenize(prompt)
    n = len(ids)
    ref = pass_hidden(b, ids, 0, n, 1)

    def changed(variants):
        diffs = [(k, (h - ref).abs().max().item()) for k, h in variants]
        bad = [f"{k} ({d:.1e})" for k, d in diffs if d > 0]
        return f"{len(bad)}/{len(diffs)}" + (": " + ", ".join(bad[:4]) if bad else "")

    split = changed([(f"split {s}", pass_hidden(b, ids, s, n - s, 1)) for s in (8, 16, 32, 64, n - 8)])
    pad = changed([(f"+{p}", pass_hidden(b, ids, 0, n + p, 1)) for p in (1, 3, 16, 32, 100)])
    rows = changed([(f"{r} rows", pass_hidden(b, ids, 0, n, r)) for r in (2, 3, 4, 8, 16)])
    return [split, pad, rows]


# -- part 2 -----------------------------------------------------------------------------------------
def timed(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def compare(per_query, merged, sizes):
    """Prompts whose score differs, max |diff|, queries whose top document differs."""
    a, b = np.concatenate(per_query), merged
    diff = np.abs(a - b).max(axis=1)
    top, at = 0, 0
    for size in sizes:
        top += int(np.argmax(a[at:at + size, 0]) != np.argmax(b[at:at + size, 0]))
        at += size
    return f"{int((diff > 0).sum())}/{len(diff)}", f"{diff.max():.1e}", f"{top}/{len(sizes)}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-0.5b"])
    ap.add_argument("--dtypes", nargs="+", default=["auto"], help="auto (from the CPU), float32, bfloat16")
    ap.add_argument("--queries", type=int, default=3)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--old-ref", default="ca22d83", help="git commit of the engine before the fix")
    ap.add_argument("--table", type=Path, default=HERE / "results" / "batch_invariance.md")
    args = ap.parse_args()
    old_cls = old_engine_class(args.old_ref)

    lines = [f"CPU: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads",
             f"command: python benchmarks/{Path(__file__).name} " + " ".join(sys.argv[1:]), ""]
    lines += ["## Part 1: what changes a prompt's bits (old engine passes)", "",
              "GEMM (K x N), M:rows whose bits differ from the same rows in a GEMM of M=1024 rows:", ""]
    for dtype in (torch.float32, torch.bfloat16):
        for k, n in ((576, 1536), (1536, 576), (896, 4864)):
            lines.append(f"- {str(dtype)[6:]} {k}x{n}: {gemm_rows_changed(dtype, k, n)}")
    lines += ["", "Last hidden state of one pointwise prompt against the same prompt alone in one pass "
              "(changed/tried, max |diff|):", "",
              "| model | dtype | prefix split at 8/16/32/64/n-8 | right padding +1/3/16/32/100 | "
              "2/3/4/8/16 identical rows |", "|---|---|---|---|---|"]

    ds = load_dataset("dl19")
    requests = [r for r in ds.requests("bm25", top_k=args.top_k) if r.query.qid in ds.qrels][:args.queries]
    speed = ["", "## Part 2: cost of the fix",
             f"pointwise.yes_no, DL19 BM25 top-{args.top_k}, {len(requests)} queries; seconds are the best of "
             f"{args.repeats}; 'differ' compares each prompt's scores between one call per query and one merged "
             "call (bits, max |diff|, queries whose top document changes)", "",
             "| model | dtype | engine | s, one call per query | s, one merged call | computed tokens | "
             "prompts that differ | max diff | top doc changes |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for model in args.models:
        for dtype in args.dtypes:
            new = load_backend(model, engine="transformers", dtype=dtype, cache=False)
            old = as_old(new, old_cls)
            method = build_method("pointwise.yes_no", new)
            prompts = [method.prompts(r.query, r.candidates) for r in requests]
            lines.append(f"| {model} | {new.dtype} | " + " | ".join(cause_rows(old, prompts[0][0])) + " |")
            sizes = [len(p) for p in prompts]
            everything = [p for ps in prompts for p in ps]
            new.choice_logprobs(everything[:2], YES_NO)  # warm-up
            for label, engine in (("before (old)", old), ("after (batch-invariant)", new)):
                t_sep, sep = timed(lambda: [engine.choice_logprobs(p, YES_NO) for p in prompts], args.repeats)
                before = engine.usage.copy()
                t_all, merged = timed(lambda: engine.choice_logprobs(everything, YES_NO), args.repeats)
                tokens = (engine.usage.copy() - before).computed_tokens // args.repeats
                speed.append(f"| {model} | {new.dtype} | {label} | {t_sep:.2f} | {t_all:.2f} | {tokens} | "
                             + " | ".join(compare(sep, merged, sizes)) + " |")
            print("\n".join(lines[-1:] + speed[-2:]), flush=True)
            del new, old
    text = "\n".join(lines + speed) + f"\n\nload average at the end: {os.getloadavg()[0]:.1f}\n"
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
