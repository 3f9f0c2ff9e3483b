"""The benchmark matrix as a YAML file: datasets x first stages x methods x models.

```yaml
datasets: [dl19, dl20]
first_stages: [bm25]          # a run the dataset ships, or bm25 (retrieved here when it ships none)
top_k: 20                     # candidates reranked per query
max_queries: 5                # judged queries per dataset (all when absent)
measures: [nDCG@10]
models: [qwen2.5-0.5b]        # the models of every LLM (and attention) method that names none
backend: {engine: auto, dtype: auto}
methods:
  - pointwise.yes_no
  - {method: setwise.heapsort, options: {k: 10}}
  - {method: embedding.cosine, model: minilm-l6}
  - {method: setwise.heapsort, peer: llm-rankers, options: {k: 10}}   # the same method in a peer toolkit
  - {method: crossencoder, model: DIR, repeats: 5}   # time a fast cell 5 times, report the median (cache: false)
  - {method: embedding.cosine, model: minilm-l6, top_k: 100}          # its own depth (the first stage's top 100)
  - {method: pairwise.allpairs, max_queries: 10, datasets: [dl19]}    # a stated subset of queries and datasets
robustness: {shuffles: 3, adversarial: true}
cache: true                   # the model output cache (false: every cell computes, for clean timings)
checkpoint: 5                 # store a cell's finished queries every 5 queries (every ~5 minutes when that is
                              # sooner): a stopped run resumes inside the cell
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from rankwise.data._io import read_yaml
from rankwise.errors import InputError

_KEYS = {"datasets", "first_stages", "top_k", "max_queries", "measures", "models", "backend", "methods",
         "robustness", "cache", "checkpoint"}


@dataclass(frozen=True)
class MethodSpec:
    """One method on one model, with its options; ``label`` names it in tables and file names; ``peer``
    runs the method in another toolkit instead (``rankwise.bench.peers``); ``repeats`` times the cell that
    many times and reports the median seconds (for fast cells, whose one-run timing is mostly noise);
    ``top_k``, ``max_queries`` and ``datasets`` are the config's unless the entry sets its own (a deeper
    list for a cheap method, a stated subset of queries for a quadratic one)."""

    method: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    peer: str = ""
    repeats: int = 1
    top_k: int = 20
    max_queries: int | None = None
    datasets: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.label or (f"{self.method}@{self.peer}" if self.peer else self.method)


@dataclass(frozen=True)
class BenchConfig:
    datasets: tuple[str, ...]
    methods: tuple[MethodSpec, ...]
    first_stages: tuple[str, ...] = ("bm25",)
    top_k: int = 20
    max_queries: int | None = None
    measures: tuple[str, ...] = ("nDCG@10",)
    engine: str = "auto"
    dtype: str = "auto"
    shuffles: int = 0
    adversarial: bool = False
    cache: bool = True
    checkpoint: int | None = None

    def runs_on(self, spec: MethodSpec, dataset: str) -> bool:
        """Whether the matrix runs ``spec`` on ``dataset`` (an entry's ``datasets`` narrows the config's; a
        ``--datasets`` override keeps that narrowing)."""
        return not spec.datasets or dataset in spec.datasets

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "BenchConfig":
        """Read a YAML matrix; ``overrides`` replace its top-level fields (``datasets``, ``models``,
        ``max_queries``, ...) before it is checked, so one file serves several sizes."""
        raw = read_yaml(path, "benchmark config")
        if overrides and isinstance(raw, dict):
            raw = raw | {key: value for key, value in overrides.items() if value is not None}
        return cls.from_dict(raw, path)

    @classmethod
    def from_dict(cls, raw: Any, source: str | Path = "<config>") -> "BenchConfig":
        from rankwise.methods.registry import method_info

        def fail(message: str) -> InputError:
            return InputError(message, source)

        if not isinstance(raw, dict):
            raise fail("the config must be a mapping with at least 'datasets' and 'methods'")
        unknown = set(raw) - _KEYS
        if unknown:
            raise fail(f"unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_KEYS))}")
        datasets = _names(raw.get("datasets"), "datasets", fail)
        first_stages = _names(raw.get("first_stages", ["bm25"]), "first_stages", fail)
        models = _names(raw["models"], "models", fail) if "models" in raw else ()
        measures = _names(raw.get("measures", ["nDCG@10"]), "measures", fail)
        if "nDCG@10" not in measures:
            measures = ("nDCG@10",) + measures
        top_k = _positive_int(raw.get("top_k", 20), "top_k", fail)
        max_queries = None if raw.get("max_queries") is None else _positive_int(raw["max_queries"], "max_queries",
                                                                                 fail)
        backend = raw.get("backend") or {}
        if not isinstance(backend, dict) or set(backend) - {"engine", "dtype"}:
            raise fail("'backend' takes only 'engine' and 'dtype'")
        robustness = raw.get("robustness") or {}
        if not isinstance(robustness, dict) or set(robustness) - {"shuffles", "adversarial"}:
            raise fail("'robustness' takes only 'shuffles' (a count) and 'adversarial' (true/false)")
        shuffles = int(robustness.get("shuffles", 0))
        if shuffles < 0:
            raise fail("robustness.shuffles must be 0 or more")
        methods: list[MethodSpec] = []
        entries = raw.get("methods")
        if not isinstance(entries, list) or not entries:
            raise fail("'methods' must be a non-empty list of method names or {method, model, options}")
        for i, entry in enumerate(entries):
            where = f"methods[{i}]"
            if isinstance(entry, str):
                entry = {"method": entry}
            if not isinstance(entry, dict) or not isinstance(entry.get("method"), str):
                raise fail(f"{where}: give a method name or a mapping with 'method'")
            extra = set(entry) - {"method", "model", "options", "label", "peer", "repeats", "top_k", "max_queries",
                                  "datasets"}
            if extra:
                raise fail(f"{where}: unknown field(s) {', '.join(sorted(extra))}")
            try:
                info = method_info(entry["method"])
            except InputError as err:
                raise fail(f"{where}: {err}") from None
            peer = str(entry.get("peer") or "")
            if peer:
                from rankwise.bench.peers import check_peer

                try:
                    check_peer(peer, entry["method"])
                except InputError as err:
                    raise fail(f"{where}: {err}") from None
            repeats = _positive_int(entry.get("repeats", 1), f"{where}.repeats", fail)
            if repeats > 1 and raw.get("cache", True):
                raise fail(f"{where}: repeats times the cell again, and with the output cache on the repeats would "
                           f"read it: set 'cache: false' at the top of the config")
            options = entry.get("options") or {}
            if not isinstance(options, dict):
                raise fail(f"{where}.options must be a mapping")
            if "model" in entry:
                targets = (str(entry["model"]),)
            elif info.needs in ("llm", "attention") and models:  # ICR reads an LLM's attention
                targets = models
            else:
                raise fail(f"{where}: {entry['method']} needs a 'model' (or a top-level 'models' list)")
            depth = _positive_int(entry.get("top_k", top_k), f"{where}.top_k", fail)
            subset = (max_queries if entry.get("max_queries") is None
                      else _positive_int(entry["max_queries"], f"{where}.max_queries", fail))
            only = _names(entry["datasets"], f"{where}.datasets", fail) if "datasets" in entry else ()
            methods += [MethodSpec(entry["method"], m, dict(options), str(entry.get("label", "")), peer, repeats,
                                   depth, subset, only) for m in targets]
        cells = [(m.name, m.model, d) for m in methods for d in (m.datasets or datasets)]
        for name, model, dataset in cells:
            if cells.count((name, model, dataset)) > 1:
                raise fail(f"{name} on {model} is listed twice for {dataset}: give the entries distinct 'label's")
        return cls(datasets=datasets, methods=tuple(methods), first_stages=first_stages, top_k=top_k,
                   max_queries=max_queries, measures=measures, engine=str(backend.get("engine", "auto")),
                   dtype=str(backend.get("dtype", "auto")), shuffles=shuffles,
                   adversarial=bool(robustness.get("adversarial", False)), cache=bool(raw.get("cache", True)),
                   checkpoint=None if raw.get("checkpoint") is None else _positive_int(raw["checkpoint"],
                                                                                      "checkpoint", fail))


def _names(value: Any, key: str, fail) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, (str, int)) for v in value):
        raise fail(f"'{key}' must be a non-empty list of names")
    return tuple(str(v) for v in value)


def _positive_int(value: Any, key: str, fail) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise fail(f"'{key}' must be a positive integer (got {value!r})")
    return value
