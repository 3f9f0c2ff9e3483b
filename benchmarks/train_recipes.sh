#!/bin/bash
# Issue 32: the GRPO recipes (examples/train-{grouprank,erank,prorank,rank-r1,reasonrank}.yaml) on
# qwen2.5-0.5b, each evaluated on DL19 (BM25 top 20) with the method it trains, beside its start.
# Resumable: a training whose results exist is skipped (an interrupted one continues with --resume), and so
# is an evaluation whose run file exists. One model process at a time. Table: benchmarks/train_recipes_table.py
# SFT=DIR: the pointwise SFT checkpoint of examples/train-sft-pointwise-dl20.yaml (trained if missing).
set -u
OUT=${OUT:-runs}
SFT=${SFT:-$OUT/sft-05b-dl20}
mkdir -p "$OUT/eval"
FEW=$(python -c "from rankwise.data import load_dataset; print(','.join(sorted(load_dataset('dl19').judged_queries())[:10]))")
rerank() {  # label model method [options...]: all 43 judged DL19 queries (QIDS=... for a subset), BM25 top 20
  # (TOPK=...), 8 queries at a time
  local label=$1 model=$2 method=$3; shift 3
  [ -s "$OUT/eval/dl19.$label.trec" ] && return
  echo "== rerank $label $(date -u +%T)"
  rankwise rerank --method "$method" --model "$model" --engine transformers --dataset dl19 --run bm25 --top-k "${TOPK:-20}" \
    --no-cache --query-batch 8 ${QIDS:+--qids "$QIDS"} "$@" --usage "$OUT/eval/dl19.$label.usage.json" \
    --output "$OUT/eval/dl19.$label.trec.tmp" --overwrite && mv "$OUT/eval/dl19.$label.trec.tmp" "$OUT/eval/dl19.$label.trec"
}
source "$(dirname "$0")/train_lib.sh"
[ -s "$SFT/train-results.json" ] || train examples/train-sft-pointwise-dl20.yaml "$SFT"
# GroupRank: its groupwise SFT stage (cold start) on groups with 1-3 relevant passages, then GRPO, on the
# method's own prompt (groupwise.score: one "Document [i] score: X" line per passage). Earlier GroupRank runs
# trained with the configs of git history and stay in the table (benchmarks/results/train_recipes/): grouprank-v1
# and grouprank started GRPO from the pointwise SFT checkpoint $SFT; grouprank-sft-05b (commit 261a221) and
# grouprank-mixed-05b (commit 66e8ca0) answered JSON lists (prompt groupwise.json, answer_prefix "[");
# grouprank-lines-05b (commit d845533) answered score lines learned from DL20's grades. This one learns the
# score lines from a teacher's scores (MiniLM cosine).
GROUP=(-o group_size=5 -o max_passage_tokens=64)
train examples/train-grouprank.yaml "$OUT/grouprank-teacher-05b"
rerank grouprank-teacher.start "$OUT/grouprank-teacher-05b/stages/1-sft" groupwise.generate "${GROUP[@]}"
rerank grouprank-teacher "$OUT/grouprank-teacher-05b" groupwise.generate "${GROUP[@]}"
rerank qwen2.5-0.5b.grouprank-lines qwen2.5-0.5b groupwise.generate "${GROUP[@]}"
# ERank: its SFT stage is the SFT checkpoint (same settings), so only the RL stage trains here
mkdir -p "$OUT/erank-05b/stages"
[ -e "$OUT/erank-05b/stages/1-sft" ] || ln -s "$(realpath "$SFT")" "$OUT/erank-05b/stages/1-sft"
train examples/train-erank.yaml "$OUT/erank-05b"
rerank sft-05b-dl20 "$SFT" pointwise.yes_no
rerank erank "$OUT/erank-05b" pointwise.yes_no
# ProRank from the instruction-tuned model
train examples/train-prorank.yaml "$OUT/prorank-05b"
rerank qwen2.5-0.5b.graded qwen2.5-0.5b pointwise.graded
rerank prorank "$OUT/prorank-05b" pointwise.graded
# Rank-R1 and ReasonRank: 10 queries (the first 10 judged DL19 qids), BM25 top 10, reasoning budgets that fit a CPU
R1=(-o prompt=setwise.rank_r1 -o set_size=4 -o reasoning_tokens=128 -o max_passage_tokens=64)
RR=(-o prompt=listwise.reasonrank -o window_size=5 -o step=3 -o reasoning_tokens=128 -o max_passage_tokens=64)
train examples/train-rank-r1.yaml "$OUT/rank-r1-05b"
TOPK=10 QIDS=$FEW rerank qwen2.5-0.5b.rank-r1.10q qwen2.5-0.5b setwise.reasoning "${R1[@]}"
TOPK=10 QIDS=$FEW rerank rank-r1.10q "$OUT/rank-r1-05b" setwise.reasoning "${R1[@]}"
train examples/train-reasonrank.yaml "$OUT/reasonrank-05b"
TOPK=10 QIDS=$FEW rerank qwen2.5-0.5b.reasonrank.10q qwen2.5-0.5b listwise.window "${RR[@]}"
TOPK=10 QIDS=$FEW rerank reasonrank.10q "$OUT/reasonrank-05b" listwise.window "${RR[@]}"
echo "== done $(date -u +%T)"
