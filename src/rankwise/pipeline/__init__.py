"""Running anything: stages composed PyTerrier-style, loaded from (method, model, options), run by one loop.

    from rankwise.pipeline import BM25, FirstStage, Fuse, Identity, Rerank, load_reranker, run

    reranker = load_reranker("pointwise.yes_no", "qwen2.5-0.5b")     # a built reranker is a stage
    cascade = (FirstStage("bm25") % 100
               >> Rerank("embedding.e2rank", model="minilm-l6") % 100
               >> reranker % 30)
    result = run(cascade, dataset="dl19")           # or cascade.run(dataset="dl19"); executor="ray"
    result.run(), result.usage, result.stages       # TREC run (the methods' scores), total Usage, per stage
    Rerank(...).to_yaml("cascade.yaml"); load_pipeline("cascade.yaml")
"""

from rankwise.pipeline.loading import Backends, load_reranker
from rankwise.pipeline.result import RunResult, StageReport
from rankwise.pipeline.run import EXECUTORS, run
from rankwise.pipeline.spec import from_dict, load_pipeline, to_dict, to_yaml
from rankwise.pipeline.stages import BM25, FirstStage, Rerank
from rankwise.stage import Chain, Fuse, Identity, Stage

__all__ = ["BM25", "Backends", "Chain", "EXECUTORS", "FirstStage", "Fuse", "Identity", "Rerank", "RunResult",
           "Stage", "StageReport", "from_dict", "load_pipeline", "load_reranker", "run", "to_dict", "to_yaml"]
