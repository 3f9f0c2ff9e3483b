#!/bin/bash
# Issue 33: E2Rank training of all-MiniLM-L6-v2 (contrastive, then listwise) on SciFact's training claims and
# on DL20, evaluated on SciFact test (300 claims) and DL19 (43 queries), BM25 top 100, untrained against the
# contrastive stage alone against both stages; the SciFact models also as a dense first stage over the corpus.
# Resumable: a finished training or cell is skipped. One model process at a time (2 torch threads).
set -u
OUT=${OUT:-runs}
source "$(dirname "$0")/train_lib.sh"
train examples/train-e2rank-scifact.yaml "$OUT/e2rank-scifact"
train examples/train-e2rank-dl20.yaml "$OUT/e2rank-dl20"
echo "== evaluate $(date -u +%T)"
python benchmarks/train_e2rank.py --threads 2 --dataset scifact --dense --model untrained=minilm-l6 \
  --model contrastive="$OUT/e2rank-scifact/contrastive" --model both="$OUT/e2rank-scifact"
python benchmarks/train_e2rank.py --threads 2 --dataset dl19 --model untrained=minilm-l6 \
  --model contrastive="$OUT/e2rank-dl20/contrastive" --model both="$OUT/e2rank-dl20"
echo "== done $(date -u +%T)"
