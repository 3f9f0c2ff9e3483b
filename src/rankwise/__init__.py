"""rankwise: rerank search results with language models, evaluate the result, train rerankers."""

from rankwise.types import Candidate, Document, Query, Ranking, Request, Usage

__all__ = ["Candidate", "Document", "Query", "Ranking", "Request", "Usage"]
__version__ = "0.1.0"
