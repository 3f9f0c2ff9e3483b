"""Datasets and result files: TREC runs/qrels/topics, BEIR, rank_llm candidates, ir_datasets."""

from rankwise.data.beir import BeirData, load_beir, read_corpus
from rankwise.data.candidates import (docs_from_requests, read_candidates, requests_from_run, run_from_requests,
                                      write_candidates, write_candidates_jsonl)
from rankwise.data.dataset import ALIASES, Dataset, LazyDocs, data_roots, load_dataset, resolve_local
from rankwise.data.irds import load_ir_dataset
from rankwise.data.rank_llm import to_rank_llm, write_rank_llm
from rankwise.data.trec import Qrels, Run, read_qrels, read_run, read_topics, write_run

__all__ = [
    "ALIASES", "BeirData", "Dataset", "LazyDocs", "Qrels", "Run", "data_roots", "docs_from_requests",
    "load_beir", "load_dataset", "load_ir_dataset", "read_candidates", "read_corpus", "read_qrels", "read_run",
    "read_topics", "requests_from_run", "resolve_local", "run_from_requests", "to_rank_llm", "write_candidates",
    "write_candidates_jsonl", "write_rank_llm", "write_run",
]
