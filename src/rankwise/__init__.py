"""rankwise: rerank search results with language models, evaluate the result, train rerankers."""

import os

# torch and llama.cpp share one OpenMP runtime, whose threads spin while they wait by default. On a
# 2-core machine that anything else also uses, spinning made llama.cpp 3-12x and torch 2x slower
# (measured here). Sleeping waiters cost little when the machine is idle. Set it yourself to override;
# it takes effect only if rankwise is imported before torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from rankwise.api import Reranker
from rankwise.types import Candidate, Document, Query, Ranking, Request, Usage

__all__ = ["Candidate", "Document", "Query", "Ranking", "Request", "Reranker", "Usage"]
__version__ = "0.1.0"
