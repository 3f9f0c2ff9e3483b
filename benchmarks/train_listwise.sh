#!/bin/bash
# Issue 31: listwise SFT (RankZephyr) and FIRST training of qwen2.5-0.5b (LoRA) on DL20, and the distilled
# pointwise student, each evaluated on all 43 DL19 queries (BM25 top 20) with the method it was trained for,
# against the untrained 0.5b on the same candidates. Resumable: a finished step is skipped.
# One model process at a time. The trained models land in the headline matrix (benchmarks/headline/cells);
# the untrained runs' usage (parse failures, windows kept in the order shown) in runs/eval/*.usage.json.
set -u
OUT=${OUT:-runs}
mkdir -p "$OUT/eval"
source "$(dirname "$0")/train_lib.sh"
cell() {  # model method: the headline cell of a model on DL19
  echo "== headline cell $2 $1 $(date -u +%T)"
  rankwise bench examples/bench-headline.yaml --output benchmarks/headline --datasets dl19 --models "$1" --only "$2"
}
usage() {  # model method label: a plain rerank with its usage (the untrained rows' counters)
  [ -s "$OUT/eval/dl19.$3.trec" ] && return
  echo "== rerank $3 $(date -u +%T)"
  rankwise rerank --method "$2" --model "$1" --dataset dl19 --run bm25 --top-k 20 --no-cache \
    --usage "$OUT/eval/dl19.$3.usage.json" --output "$OUT/eval/dl19.$3.trec.tmp" --overwrite \
    && mv "$OUT/eval/dl19.$3.trec.tmp" "$OUT/eval/dl19.$3.trec"
}
train examples/train-sft-listwise-dl20.yaml "$OUT/sft-listwise-05b"
while [ -n "${WAIT_FOR:-}" ] && [ ! -e "$WAIT_FOR" ]; do sleep 20; done
cell "$OUT/sft-listwise-05b" listwise.window
usage qwen2.5-0.5b listwise.window qwen2.5-0.5b.window
train examples/train-sft-first-dl20.yaml "$OUT/sft-first-05b"
cell "$OUT/sft-first-05b" listwise.first
usage qwen2.5-0.5b listwise.first qwen2.5-0.5b.first
train examples/train-distill-pointwise-dl20.yaml "$OUT/distill-05b-dl20" --max-steps 31  # the qrels SFT's 31 steps
cell "$OUT/distill-05b-dl20" pointwise.yes_no
echo "== done $(date -u +%T)"
