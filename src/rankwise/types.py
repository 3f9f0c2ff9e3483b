"""Core data model: plain frozen dataclasses shared by every layer (plus the mutable Usage counter)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterator, Mapping, Sequence


@dataclass(frozen=True)
class Query:
    qid: str
    text: str

    def to_dict(self) -> dict:
        return {"qid": self.qid, "text": self.text}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Query":
        return cls(str(data["qid"]), str(data["text"]))


@dataclass(frozen=True)
class Document:
    docid: str
    text: str
    title: str = ""


@dataclass(frozen=True)
class Candidate:
    """A document proposed for a query by an earlier stage, with that stage's score."""

    docid: str
    text: str
    score: float = 0.0
    title: str = ""

    @property
    def content(self) -> str:
        """Title and text as one passage (what prompts show)."""
        return f"{self.title}\n{self.text}" if self.title else self.text

    def to_dict(self) -> dict:
        out = {"docid": self.docid, "text": self.text, "score": self.score}
        return out | {"title": self.title} if self.title else out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Candidate":
        return cls(str(data["docid"]), str(data["text"]), float(data.get("score", 0.0)), str(data.get("title", "")))


@dataclass(frozen=True)
class Request:
    """One query with its candidates in first-stage order (maps 1:1 to a rank_llm request)."""

    query: Query
    candidates: tuple[Candidate, ...]

    def to_dict(self) -> dict:
        """``{"query": {"qid", "text"}, "candidates": [{"docid", "text", "score", "title"?}, ...]}``: the one
        JSON shape of a request in files, on Ray and over HTTP."""
        return {"query": self.query.to_dict(), "candidates": [c.to_dict() for c in self.candidates]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Request":
        return cls(Query.from_dict(data["query"]), tuple(Candidate.from_dict(c) for c in data["candidates"]))


_COUNTERS = ("calls", "forward_passes", "prompt_tokens", "computed_tokens", "completion_tokens",
             "parse_failures", "cache_hits", "flagged", "comparisons", "inconsistent", "exact_paths",
             "heuristic_paths", "windows", "unchanged_windows", "seconds")


@dataclass
class Usage:
    """What language-model work cost. Backends fill it; methods and reports read it.

    ``prompt_tokens`` counts every prompt token; ``computed_tokens`` only those actually run through the
    model after prefix/KV reuse and cache hits. ``calls`` counts prompts sent to the backend.
    ``comparisons`` counts the pairs a pairwise method asked in both orders, ``inconsistent`` those whose
    two answers did not pick the same passage (position bias, or no decision). ``exact_paths`` and
    ``heuristic_paths`` count the orders a travelling-salesman solver found exactly or by local search.
    ``windows`` counts the windows a listwise method asked, ``unchanged_windows`` those whose answer, as
    parsed (repairs included), kept the order shown: an echo of the input (what untrained small models
    mostly give) or an answer too broken to reorder anything (also counted in ``parse_failures``).
    """

    calls: int = 0
    forward_passes: int = 0
    prompt_tokens: int = 0
    computed_tokens: int = 0
    completion_tokens: int = 0
    parse_failures: int = 0
    cache_hits: int = 0
    flagged: int = 0  # candidates the injection guard demoted (rankwise.methods.guard)
    comparisons: int = 0
    inconsistent: int = 0
    exact_paths: int = 0
    heuristic_paths: int = 0
    windows: int = 0
    unchanged_windows: int = 0
    seconds: float = 0.0
    engine: str = ""
    dtype: str = ""
    model: str = ""

    def add(self, other: "Usage") -> "Usage":
        """Add other's counters into self (in place) and return self."""
        for name in _COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("engine", "dtype", "model"):
            if not getattr(self, name):
                setattr(self, name, getattr(other, name))
        return self

    def __sub__(self, other: "Usage") -> "Usage":
        out = Usage(engine=self.engine, dtype=self.dtype, model=self.model)
        for name in _COUNTERS:
            setattr(out, name, getattr(self, name) - getattr(other, name))
        return out

    def copy(self) -> "Usage":
        return Usage(**{f.name: getattr(self, f.name) for f in fields(self)})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["seconds"] = round(d["seconds"], 4)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Usage":
        """Read ``to_dict``'s shape back; keys that are not Usage fields are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def counters(self) -> dict[str, float]:
        """The counters alone (no engine, dtype or model): what two runs of the same work must agree on."""
        return {name: getattr(self, name) for name in _COUNTERS if name != "seconds"}


@dataclass(frozen=True)
class Ranking:
    """Candidates in their new order, a score each (descending), and the Usage it cost."""

    query: Query
    candidates: tuple[Candidate, ...]
    scores: tuple[float, ...]
    usage: Usage = field(default_factory=Usage, compare=False)

    def __post_init__(self) -> None:
        if len(self.candidates) != len(self.scores):
            raise ValueError("Ranking needs one score per candidate")

    def __len__(self) -> int:
        return len(self.candidates)

    def __iter__(self) -> Iterator[tuple[Candidate, float]]:
        return iter(zip(self.candidates, self.scores))

    @property
    def docids(self) -> list[str]:
        return [c.docid for c in self.candidates]

    def top_k(self, k: int) -> list[Candidate]:
        return list(self.candidates[:k])

    def to_dict(self) -> dict:
        """``{"query", "candidates" (in ranked order, each with the method's score), "usage"}``."""
        return {"query": self.query.to_dict(),
                "candidates": [Candidate.to_dict(c) | {"score": s} for c, s in self],
                "usage": self.usage.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Ranking":
        candidates = tuple(Candidate.from_dict(c) for c in data["candidates"])
        return cls(Query.from_dict(data["query"]), candidates, tuple(c.score for c in candidates),
                   Usage.from_dict(data.get("usage", {})))

    @classmethod
    def from_order(cls, query: Query, candidates: Sequence[Candidate], order: Sequence[int],
                   usage: Usage | None = None) -> "Ranking":
        """Build a ranking from a permutation of indices; scores fall linearly with rank."""
        n = len(order)
        if sorted(order) != list(range(len(candidates))):
            raise ValueError("order must be a permutation of the candidate indices")
        return cls(query, tuple(candidates[i] for i in order), tuple(float(n - r) for r in range(n)),
                   usage or Usage())

    @classmethod
    def from_scores(cls, query: Query, candidates: Sequence[Candidate], scores: Sequence[float],
                    usage: Usage | None = None) -> "Ranking":
        """Sort by score, descending; ties keep the input order (a stable sort)."""
        order = sorted(range(len(candidates)), key=lambda i: -scores[i])
        return cls(query, tuple(candidates[i] for i in order), tuple(float(scores[i]) for i in order),
                   usage or Usage())
