"""Composable pipelines: stages as values, PyTerrier-style, run over a dataset or requests.

    from rankwise.compose import BM25, FirstStage, Fuse, Rerank

    cascade = (FirstStage("bm25") % 100
               >> Rerank("embedding.e2rank", model="minilm-l6") % 100
               >> Rerank("pointwise.yes_no", model="qwen2.5-0.5b") % 30)
    print(cascade)                     # the expression above
    result = cascade.run(dataset="dl19")
    result.run(), result.usage, result.stages   # TREC run, total Usage, Usage and seconds per stage
    cascade.to_yaml("cascade.yaml"); load_pipeline("cascade.yaml") == cascade
"""

from rankwise.compose.runner import Backends
from rankwise.compose.spec import from_dict, load_pipeline, to_dict, to_yaml
from rankwise.compose.stages import BM25, Chain, FirstStage, Fuse, Identity, Rerank, Stage
from rankwise.pipeline import PipelineResult, StageReport

__all__ = ["BM25", "Backends", "Chain", "FirstStage", "Fuse", "Identity", "PipelineResult", "Rerank", "Stage",
           "StageReport", "from_dict", "load_pipeline", "to_dict", "to_yaml"]
