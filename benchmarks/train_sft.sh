#!/bin/bash
# Issue 31: pointwise SFT vs contrastive training vs distillation (from qwen2.5-1.5b) of qwen2.5-0.5b (LoRA) on DL20, evaluated on all 43 DL19
# queries (BM25 top 20, pointwise.yes_no), against BM25, the untrained 0.5b and the untrained 1.5b.
# Resumable: a step whose result exists is skipped; an interrupted training continues with --resume.
# One model process at a time (qwen2.5-1.5b needs ~11 GB while loading). Results: benchmarks/results/training_sft.md
set -u
OUT=${OUT:-runs}
mkdir -p "$OUT/eval"
rerank() {  # model label
  [ -s "$OUT/eval/dl19.$2.trec" ] && return
  echo "== rerank $2 $(date -u +%T)"
  rankwise rerank --method pointwise.yes_no --model "$1" --dataset dl19 --run bm25 --top-k 20 --no-cache \
    --usage "$OUT/eval/dl19.$2.usage.json" --output "$OUT/eval/dl19.$2.trec.tmp" --overwrite \
    && mv "$OUT/eval/dl19.$2.trec.tmp" "$OUT/eval/dl19.$2.trec"
}
source "$(dirname "$0")/train_lib.sh"
rerank qwen2.5-0.5b qwen2.5-0.5b.untrained
train examples/train-sft-pointwise-dl20.yaml "$OUT/sft-05b-dl20" --max-minutes 25   # the first run: 25 + 5 minutes
rerank "$OUT/sft-05b-dl20" sft-05b-dl20
rerank qwen2.5-1.5b qwen2.5-1.5b.untrained
train examples/train-contrastive-pointwise-dl20.yaml "$OUT/contrastive-05b-dl20"
rerank "$OUT/contrastive-05b-dl20" contrastive-05b-dl20
train examples/train-distill-pointwise-dl20.yaml "$OUT/distill-05b-dl20"   # teacher: pointwise.yes_no on qwen2.5-1.5b
rerank "$OUT/distill-05b-dl20" distill-05b-dl20
train examples/train-sft-pointwise-dl20.yaml "$OUT/sft-05b-dl20-55m"   # the same SFT, the example's 55 minutes
rerank "$OUT/sft-05b-dl20-55m" sft-05b-dl20-55m
QRELS=${QRELS:-../shared/data/trec-dl-2019-passage/qrels.dl19-passage.txt}
for run in ../shared/data/trec-dl-2019-passage/run.bm25.top100.trec "$OUT"/eval/dl19.*.trec; do
  echo "$(basename "$run") $(rankwise evaluate --run "$run" --qrels "$QRELS" -m nDCG@10 --json)"
done
