"""The rerank HTTP service: ``rankwise serve`` (FastAPI + uvicorn) over any method and model."""

from rankwise.serve.app import RERANK_PATHS, create_app
from rankwise.llm.batching import BatchingBackend, BatchStats, RequestTimeout
from rankwise.serve.limits import ServeConfig

__all__ = ["RERANK_PATHS", "BatchStats", "BatchingBackend", "RequestTimeout", "ServeConfig", "create_app"]
