"""A pipeline as a YAML/JSON file and back. The file lists the stages in order:

    pipeline:
      - first_stage: bm25          # a run the dataset ships (or: retrieve: bm25, with k1, b)
        top_k: 100
      - rerank: embedding.e2rank   # a method name (rankwise methods list)
        model: minilm-l6
        top_k: 100
      - rerank: pointwise.yes_no
        model: qwen2.5-0.5b
        top_k: 30
        options: {max_passage_tokens: 128}   # method options; backend_options go to the engine
      - fuse: rrf                  # or interpolate (weights, norm: minmax | zscore)
        branches:                  # each branch: a list of stages (or one stage)
          - [{rerank: pairwise.heapsort, model: qwen2.5-0.5b}]
          - [{rerank: setwise.heapsort, model: qwen2.5-0.5b}]
      - fuse: interpolate          # the previous stage's scores mixed with a reranker's
        top_k: 30
        branches: [{identity: true}, {rerank: pointwise.yes_no, model: qwen2.5-1.5b}]

A nested ``pipeline:`` list with a ``top_k`` is ``(a >> b) % k``. Mistakes are InputErrors naming the file
and the field (``pipeline[2].top_k``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import yaml

from rankwise.methods.method import Method
from rankwise.pipeline.stages import BM25, FirstStage, Rerank
from rankwise.stage import Chain, Fuse, Identity, Stage
from rankwise.data._io import read_yaml
from rankwise.errors import InputError
from rankwise.fusion import RRF_K

_KINDS = ("first_stage", "retrieve", "rerank", "fuse", "identity", "pipeline")
_FIELDS = {
    "first_stage": {"top_k"},
    "retrieve": {"top_k", "k1", "b"},
    "rerank": {"model", "top_k", "engine", "dtype", "options", "backend_options"},
    "fuse": {"branches", "k", "weights", "norm", "top_k"},
    "identity": {"top_k"},
    "pipeline": {"top_k"},
}
RETRIEVERS = ("bm25",)


# -- to data ----------------------------------------------------------------------------------------
def _stage_dict(stage: Stage) -> dict[str, Any]:
    if isinstance(stage, FirstStage):
        out: dict[str, Any] = {"first_stage": stage.name}
    elif isinstance(stage, BM25):
        out = {"retrieve": "bm25"}
        out.update({k: getattr(stage, k) for k in ("k1", "b") if getattr(stage, k) != getattr(BM25, k)})
    elif isinstance(stage, Method):
        spec = getattr(stage, "spec", None)
        if spec is None:
            raise InputError(f"{stage} was built by hand: only a reranker loaded by name (load_reranker or "
                             "Rerank) can be written to a file")
        out = {"rerank": spec["method"], "model": spec["model"]}
        if spec.get("options"):
            out["options"] = dict(spec["options"])
    elif isinstance(stage, Rerank):
        out = {"rerank": stage.method, "model": stage.model}
        out.update({k: getattr(stage, k) for k in ("engine", "dtype") if getattr(stage, k) != "auto"})
        out.update({k: dict(getattr(stage, k)) for k in ("options", "backend_options") if getattr(stage, k)})
    elif isinstance(stage, Fuse):
        out = {"fuse": stage.method, "branches": [_stage_list(b) for b in stage.branches]}
        if stage.method == "rrf" and stage.k != RRF_K:
            out["k"] = stage.k
        if stage.weights is not None:
            out["weights"] = list(stage.weights)
        if stage.method == "interpolate" and stage.norm != "minmax":
            out["norm"] = stage.norm
    elif isinstance(stage, Identity):
        out = {"identity": True}
    elif isinstance(stage, Chain):
        out = {"pipeline": [_stage_dict(s) for s in stage.stages]}
    else:
        raise InputError(f"{type(stage).__name__} cannot be written to a file")
    if stage.top_k is not None:  # next to the stage's name, where a reader looks for it
        head = 2 if "model" in out else 1
        items = list(out.items())
        out = dict(items[:head] + [("top_k", stage.top_k)] + items[head:])
    return out


def _stage_list(stage: Stage) -> list[dict[str, Any]]:
    if isinstance(stage, Chain) and stage.top_k is None:
        return [_stage_dict(s) for s in stage.stages]
    return [_stage_dict(stage)]


def to_dict(stage: Stage) -> dict[str, Any]:
    """``{"pipeline": [stage, ...]}``: plain data that :func:`from_dict` turns back into an equal pipeline."""
    return {"pipeline": _stage_list(stage)}


def to_yaml(stage: Stage, path: str | Path | None = None) -> str:
    """YAML text of :func:`to_dict`; written to ``path`` when given."""
    text = yaml.safe_dump(to_dict(stage), sort_keys=False, default_flow_style=False)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


# -- from data --------------------------------------------------------------------------------------
def _fail(where: str, problem: str) -> InputError:
    return InputError(f"{where}: {problem}")


def _typed(where: str, value: Any, check: Callable[[Any], bool], expected: str) -> Any:
    if not check(value):
        raise _fail(where, f"expected {expected}, got {value!r}")
    return value


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_str(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def _stage_from(data: Any, where: str) -> Stage:
    _typed(where, data, lambda v: isinstance(v, dict), f"a mapping with one of {', '.join(_KINDS)}")
    kinds = [k for k in _KINDS if k in data]
    if len(kinds) != 1:
        raise _fail(where, f"expected exactly one of {', '.join(_KINDS)}, got {', '.join(map(str, data)) or 'none'}")
    kind = kinds[0]
    for key in data:
        if key != kind and key not in _FIELDS[kind]:
            raise _fail(f"{where}.{key}", f"unknown field for a {kind} stage "
                                          f"(allowed: {', '.join(sorted(_FIELDS[kind]))})")
    top_k = data.get("top_k")
    if top_k is not None:
        _typed(f"{where}.top_k", top_k, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
               "a positive integer")
    try:
        return _build(kind, data, where, top_k)
    except InputError as err:
        if err.reason.startswith(where):
            raise
        raise _fail(f"{where}.{kind}", err.reason) from None


def _build(kind: str, data: dict, where: str, top_k: int | None) -> Stage:
    if kind == "first_stage":
        return FirstStage(_typed(f"{where}.first_stage", data[kind], _is_str, "a run name like bm25"), top_k)
    if kind == "retrieve":
        _typed(f"{where}.retrieve", data[kind], lambda v: v in RETRIEVERS, f"one of {', '.join(RETRIEVERS)}")
        params = {k: _typed(f"{where}.{k}", data[k], _is_number, "a number") for k in ("k1", "b") if k in data}
        return BM25(**params, top_k=top_k if top_k is not None else BM25.top_k)
    if kind == "rerank":
        method = _typed(f"{where}.rerank", data[kind], _is_str, "a method name (rankwise methods list)")
        model = _typed(f"{where}.model", data.get("model"), _is_str, "a model name")
        params = {k: _typed(f"{where}.{k}", data[k], _is_str, "a string") for k in ("engine", "dtype") if k in data}
        options = _typed(f"{where}.options", data.get("options") or {}, lambda v: isinstance(v, dict), "a mapping")
        backend = _typed(f"{where}.backend_options", data.get("backend_options") or {},
                         lambda v: isinstance(v, dict), "a mapping")
        clash = {"model", "top_k", "engine", "dtype", "backend_options"} & set(options)
        if clash:
            raise _fail(f"{where}.options", f"{', '.join(sorted(clash))} belong to the stage, not its options")
        return Rerank(method, model, top_k=top_k, backend_options=backend, **params, **options)
    if kind == "fuse":
        branches = _typed(f"{where}.branches", data.get("branches"), lambda v: isinstance(v, list) and len(v) >= 2,
                          "a list of at least two branches")
        params: dict[str, Any] = {"method": _typed(f"{where}.fuse", data[kind], _is_str, "rrf or interpolate")}
        if "k" in data:
            params["k"] = _typed(f"{where}.k", data["k"], lambda v: _is_number(v) and v >= 0, "a number >= 0")
        if "weights" in data:
            params["weights"] = _typed(f"{where}.weights", data["weights"],
                                       lambda v: isinstance(v, list) and all(map(_is_number, v)), "a list of numbers")
        if "norm" in data:
            params["norm"] = _typed(f"{where}.norm", data["norm"], _is_str, "minmax or zscore")
        return Fuse(*[_branch(b, f"{where}.branches[{j}]") for j, b in enumerate(branches)], top_k=top_k, **params)
    if kind == "identity":
        _typed(f"{where}.identity", data[kind], lambda v: v is True, "true")
        return Identity(top_k)
    stages = _stages(data[kind], f"{where}.pipeline")
    if len(stages) == 1:
        return stages[0] % top_k if top_k is not None else stages[0]
    return Chain(*stages, top_k=top_k)


def _branch(data: Any, where: str) -> Stage:
    if isinstance(data, dict):
        return _stage_from(data, where)
    stages = _stages(data, where)
    return stages[0] if len(stages) == 1 else Chain(*stages)


def _stages(data: Any, where: str) -> list[Stage]:
    _typed(where, data, lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list of stages")
    stages = [_stage_from(d, f"{where}[{i}]") for i, d in enumerate(data)]
    for i, stage in enumerate(stages[1:], 1):
        if stage.is_source:
            raise _fail(f"{where}[{i}]", f"{stage} retrieves candidates: it can only start a pipeline")
    return stages


def from_dict(data: Any) -> Stage:
    """The pipeline described by ``{"pipeline": [stage, ...]}``; a mistake is an InputError naming the field."""
    _typed("pipeline file", data, lambda v: isinstance(v, dict) and "pipeline" in v,
           "a mapping with a 'pipeline' list")
    extra = set(data) - {"pipeline"}
    if extra:
        raise _fail(sorted(extra)[0], "unknown top-level field (a pipeline file holds 'pipeline')")
    stages = _stages(data["pipeline"], "pipeline")
    return stages[0] if len(stages) == 1 else Chain(*stages)


def load_pipeline(path: str | Path) -> Stage:
    """Read a pipeline file (YAML, or JSON); an InputError names the file, and the field or line."""
    p = Path(path)
    data = read_yaml(p, "pipeline file")
    try:
        return from_dict(data)
    except InputError as err:
        raise InputError(err.reason, p) from None
