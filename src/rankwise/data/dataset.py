"""One evaluation dataset: queries, qrels, document texts and the first-stage results shipped with it.

``load_dataset`` accepts a BEIR directory, a TREC-DL style folder (topics, qrels, runs, rank_llm
candidate files), a short alias (``dl19``, ``dl20``, ``scifact``) or an ir_datasets id.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

from rankwise.data.beir import is_beir_dir, load_beir
from rankwise.data.candidates import docs_from_requests, read_candidates, requests_from_run
from rankwise.data.trec import Qrels, read_qrels, read_run, read_topics
from rankwise.errors import InputError
from rankwise.types import Document, Request

ALIASES = {"dl19": "trec-dl-2019-passage", "dl20": "trec-dl-2020-passage", "scifact": "beir-scifact"}
"""Short names for the folders of the shared evaluation data."""

_RUN_FILE = re.compile(r"^run\.(?P<name>.+?)(?:\.top\d+)?\.trec(?:\.gz)?$")
_CANDIDATES_FILE = re.compile(r"^retrieve_results\.(?P<name>.+?)(?:\.top\d+)?\.jsonl?(?:\.gz)?$")
_TOPICS_FILE = re.compile(r"^(?:topics|queries).*\.(?:tsv|jsonl)(?:\.gz)?$")
CANDIDATE_SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz")
"""Names of candidates files (anything else given as a first stage is read as a TREC run)."""
_QRELS_FILE = re.compile(r"^qrels.*\.(?:txt|trec|tsv)(?:\.gz)?$")


class LazyDocs(Mapping[str, Document]):
    """A read-only docid -> Document mapping built by ``load`` on first access."""

    def __init__(self, load: Callable[[], Mapping[str, Document]], source: str):
        self._load = load
        self._docs: Mapping[str, Document] | None = None
        self.source = source

    def _get(self) -> Mapping[str, Document]:
        if self._docs is None:
            self._docs = self._load()
        return self._docs

    def __getitem__(self, docid: str) -> Document:
        return self._get()[docid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return f"LazyDocs({self.source})"


@dataclass(repr=False)
class Dataset:
    """Queries, judgments, document texts (maybe lazy) and named first-stage files."""

    name: str
    queries: dict[str, str]
    qrels: Qrels
    docs: Mapping[str, Document] | None
    candidates: dict[str, Path] = field(default_factory=dict)
    runs: dict[str, Path] = field(default_factory=dict)

    def judged_queries(self) -> dict[str, str]:
        """The queries that have judgments (what evaluation should average over)."""
        return {qid: text for qid, text in self.queries.items() if qid in self.qrels}

    def requests(self, first_stage: str, top_k: int | None = None) -> list[Request]:
        """Rerank requests from a first stage: one it names (its candidates file, else its run plus ``docs``),
        or a file (candidates JSON/JSONL, else a TREC run plus ``docs``)."""
        candidates, run = self.candidates.get(first_stage), self.runs.get(first_stage)
        if candidates is None and run is None and Path(first_stage).is_file():
            path = Path(first_stage)
            candidates, run = (path, None) if path.name.endswith(CANDIDATE_SUFFIXES) else (None, path)
        if candidates is not None:
            return self._cut(read_candidates(candidates), top_k)
        if run is not None:
            if self.docs is None:
                raise InputError(f"dataset {self.name} has no document texts to pair with run {first_stage!r}")
            return requests_from_run(read_run(run), self.queries, self.docs, top_k)
        known = sorted(set(self.candidates) | set(self.runs))
        raise InputError(f"dataset {self.name} has no first stage {first_stage!r} "
                         f"(it has: {', '.join(known) or 'none'}; or give a run or candidates file)")

    @staticmethod
    def _cut(requests: list[Request], top_k: int | None) -> list[Request]:
        return requests if top_k is None else [Request(r.query, r.candidates[:top_k]) for r in requests]

    def __repr__(self) -> str:
        docs = f"<{len(self.docs)} docs>" if isinstance(self.docs, dict) else repr(self.docs)
        return (f"Dataset(name={self.name!r}, queries={len(self.queries)}, judged={len(self.qrels)}, "
                f"docs={docs}, candidates={sorted(self.candidates)}, runs={sorted(self.runs)})")


def _named_files(directory: Path, pattern: re.Pattern) -> dict[str, Path]:
    return {m["name"]: f for f in sorted(directory.iterdir()) if (m := pattern.match(f.name))}


def _one_file(directory: Path, pattern: re.Pattern, what: str) -> Path:
    found = [f for f in sorted(directory.iterdir()) if f.is_file() and pattern.match(f.name)]
    if len(found) != 1:
        names = ", ".join(f.name for f in found) if found else "none"
        raise InputError(f"expected one {what} file, found {names}", directory)
    return found[0]


def _candidate_docs(files: list[Path]) -> dict[str, Document]:
    docs: dict[str, Document] = {}
    for f in files:
        for docid, doc in docs_from_requests(read_candidates(f)).items():
            docs.setdefault(docid, doc)
    return docs


def _load_directory(directory: Path, name: str) -> Dataset:
    candidates = _named_files(directory, _CANDIDATES_FILE)
    runs = _named_files(directory, _RUN_FILE)
    if is_beir_dir(directory):
        beir = load_beir(directory)
        return Dataset(name, beir.queries, beir.qrels, beir.corpus, candidates, runs)
    if not any(_TOPICS_FILE.match(f.name) for f in directory.iterdir()):
        raise InputError("not a dataset directory: expected BEIR files (corpus.jsonl[.gz], queries.jsonl, "
                         "qrels/test.tsv) or TREC files (topics*.tsv, qrels*.txt)", directory)
    queries = read_topics(_one_file(directory, _TOPICS_FILE, "topics"))
    qrels_file = _one_file(directory, _QRELS_FILE, "qrels")
    qrels = read_qrels(qrels_file)
    missing = [qid for qid in qrels if qid not in queries]
    if missing:
        raise InputError(f"{len(missing)} judged queries are not in the topics, e.g. {missing[0]}", qrels_file)
    files = list(candidates.values())
    docs = LazyDocs(lambda: _candidate_docs(files), f"texts from {len(files)} candidates files in {directory}") \
        if files else None
    return Dataset(name, queries, qrels, docs, candidates, runs)


def data_roots() -> list[Path]:
    """Where aliases are looked up: $RANKWISE_DATA if set, else /work/shared/data and ../shared/data."""
    env = os.environ.get("RANKWISE_DATA")
    if env:
        return [Path(env)]
    return [Path("/work/shared/data"), Path.cwd().parent / "shared" / "data"]


def resolve_local(path_or_id: str) -> Path | None:
    """The local directory meant by a path, an alias or a folder name under a data root, if any."""
    path = Path(path_or_id).expanduser()
    if path.exists():
        return path
    name = ALIASES.get(path_or_id, path_or_id)
    if "/" in name or os.sep in name:
        return None
    return next((root / name for root in data_roots() if (root / name).is_dir()), None)


def load_dataset(path_or_id: str) -> Dataset:
    """Load a dataset from a directory, an alias (dl19, dl20, scifact) or an ir_datasets id."""
    local = resolve_local(str(path_or_id))
    if local is not None:
        if not local.is_dir():
            raise InputError("is a file, expected a dataset directory", local)
        name = str(path_or_id) if str(path_or_id) in ALIASES else local.resolve().name
        return _load_directory(local, name)
    from rankwise.data import irds  # imports this module, so only now

    if irds.is_ir_dataset_id(str(path_or_id)):
        return irds.load_ir_dataset(str(path_or_id))
    hint = "" if irds.installed() else f" (ir_datasets ids need: {irds.INSTALL_HINT})"
    raise InputError(f"{path_or_id}: no such file, directory or dataset id{hint}; known names: "
                     f"{', '.join(known_names())}")


def known_names() -> list[str]:
    """The aliases, then the dataset folders under the data roots."""
    folders = sorted({d.name for root in data_roots() if root.is_dir() for d in root.iterdir()
                      if d.is_dir() and not d.name.startswith(".")})
    return list(ALIASES) + [f for f in folders if f not in ALIASES.values()]
