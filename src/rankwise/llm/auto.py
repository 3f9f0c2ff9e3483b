"""engine="auto": measure each available engine on this machine, keep the fastest (cached per machine).

The measurement is what a reranker does: yes/no ``choice_logprobs`` over passage-first prompts of
about 150-token passages, counted by the backend's own ``Usage``. The result is cached per (CPU model,
CPU flags, threads, device) and model in ``cache_dir()/engine-choice.json``; ``RANKWISE_ENGINE``
("llamacpp" or "transformers:float32") overrides it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from filelock import FileLock

from rankwise.errors import ModelError
from rankwise.llm.protocol import Backend
from rankwise.llm.hardware import CpuInfo, choose_device, choose_dtype, cpu_info, dtype_name
from rankwise.llm.models import ResolvedModel, cache_dir, resolve_model

logger = logging.getLogger(__name__)

ENGINE_ENV = "RANKWISE_ENGINE"
KNOWN_ENGINES = ("transformers", "llamacpp", "openai", "vllm", "sentence-transformers")
CHOICES = ("Yes|yes| Yes", "No|no| No")
# One query of pointwise reranking: what the choice must be fastest at (measured per call, not per prompt).
PROMPTS_PER_CALL = 8

Factory = Callable[..., Backend]

# Realistic passage-first yes/no prompts: MS MARCO-like passages of about 150 tokens each.
_PASSAGES = (
    ("what causes the northern lights",
     "The aurora borealis, or northern lights, appears when charged particles streaming from the Sun "
     "reach the Earth's magnetosphere. The magnetic field funnels electrons and protons toward the polar "
     "regions, where they collide with oxygen and nitrogen atoms in the upper atmosphere between about "
     "100 and 300 kilometres above the ground. Each collision excites an atom, which then releases the "
     "energy as light: oxygen gives the common green glow and, higher up, a rarer deep red, while "
     "nitrogen adds blue and purple fringes. Displays are strongest during geomagnetic storms that follow "
     "solar flares and coronal mass ejections, and they are best seen on clear, dark winter nights far "
     "from city lights in Norway, Iceland, Canada and Alaska."),
    ("how long should you boil an egg for a soft yolk",
     "For a soft-boiled egg with a runny yolk and a set white, lower a large egg straight from the "
     "refrigerator into water that is already at a rolling boil, then reduce the heat so it simmers "
     "gently. Cook it for six minutes, or six and a half if you like the white completely firm around "
     "the yolk. Move the egg at once into a bowl of iced water for a minute to stop the cooking and make "
     "it easier to peel. Medium eggs need about thirty seconds less, extra-large ones about thirty "
     "seconds more. At high altitude water boils at a lower temperature, so add a minute. Serve the egg "
     "in a cup with buttered toast cut into strips for dipping into the warm yolk."),
    ("symptoms of vitamin d deficiency in adults",
     "Vitamin D helps the body absorb calcium and phosphate, so a long-term shortage mainly affects "
     "bones and muscles. Many adults with low levels notice nothing at first. When symptoms do appear "
     "they are often vague: tiredness, aching bones, especially in the lower back, muscle weakness or "
     "cramps, and low mood. Over months, poor calcium absorption can soften the bones, a condition called "
     "osteomalacia, which raises the risk of fractures and falls in older people. People who spend little "
     "time outdoors, cover most of their skin, have darker skin or live far from the equator are at "
     "higher risk. A simple blood test measures the level, and supplements or safe sun exposure usually "
     "correct it within a few months."),
    ("who designed the eiffel tower",
     "The Eiffel Tower was built for the 1889 Exposition Universelle in Paris, held to mark the "
     "centenary of the French Revolution. Although it carries the name of Gustave Eiffel, whose "
     "engineering company built it, the first design came from two of his senior engineers, Maurice "
     "Koechlin and Emile Nouguier, who sketched a tall pylon of four lattice girders meeting at the top. "
     "The architect Stephen Sauvestre then refined the look, adding the decorative arches at the base and "
     "the glass pavilion on the first level. Eiffel bought the patent rights from his engineers and "
     "defended the project against artists who called it useless and monstrous. Construction took two "
     "years, two months and five days, using about eighteen thousand wrought-iron parts."),
)



@dataclass(frozen=True)
class EngineSpeed:
    """One engine's measured prefill speed for a model on this machine."""

    engine: str
    dtype: str           # as the backend reports it ("bfloat16", "float32", "q4_k_m", ...)
    tokens_per_s: float  # prompt tokens scored per second (prefix reuse included)
    prompts: int
    tokens: int
    seconds: float


@dataclass(frozen=True)
class EngineChoice:
    """The engine and dtype to use for a model here, with the measurements behind the choice."""

    engine: str
    dtype: str
    speeds: tuple[EngineSpeed, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)
    measured_at: str = ""


def available_engines(resolved: ResolvedModel) -> list[str]:
    """Engines that can run this model here: transformers always, llamacpp for a GGUF file when
    llama-cpp-python is installed, vllm when installed; sentence-transformers for embedding models."""
    if resolved.kind == "embedding":
        return ["sentence-transformers"]
    engines = ["transformers"]
    if resolved.gguf_file is not None and importlib.util.find_spec("llama_cpp") is not None:
        engines.append("llamacpp")
    if importlib.util.find_spec("vllm") is not None:
        engines.append("vllm")
    return engines


def _query_prompts(backend: Backend, call: int) -> list[str]:
    """One query's worth of default pointwise prompts, as rankwise's methods send them: the judging
    instruction shared, the passages different (so prefix reuse counts as it does in real runs)."""
    from rankwise.prompts import load_prompt

    template = load_prompt("pointwise.yes_no")
    query = _PASSAGES[call % len(_PASSAGES)][0]
    passages = [_PASSAGES[(call + i) % len(_PASSAGES)][1] for i in range(PROMPTS_PER_CALL)]
    return [backend.format_chat(template.render(query=query, passage=f"{passage} ({i})"))
            for i, passage in enumerate(passages)]


def _default_factory() -> Factory:
    from rankwise.llm import load_backend

    return load_backend


def measure_engine(model: str, engine: str, dtype: str = "auto", seconds: float = 10.0,
                   *, factory: Factory | None = None) -> EngineSpeed:
    """Prompt tokens/s of ``engine`` on ``model`` over whole queries of pointwise yes/no scoring
    (``PROMPTS_PER_CALL`` prompts each, the real template), for about ``seconds`` after loading and a
    warm-up call; at least one query. Prompt tokens, not computed ones: prefix reuse is part of the speed."""
    backend = (factory or _default_factory())(model, engine=engine, dtype=dtype)
    backend.choice_logprobs(_query_prompts(backend, 0)[:2], CHOICES)  # warm-up: allocations, kernels
    usage = backend.usage
    prompt0, seconds0, calls0 = usage.prompt_tokens, usage.seconds, usage.calls
    wall0, call = time.perf_counter(), 1
    while True:
        backend.choice_logprobs(_query_prompts(backend, call), CHOICES)
        call += 1
        if usage.seconds - seconds0 >= seconds or time.perf_counter() - wall0 >= seconds:
            break
    elapsed = usage.seconds - seconds0 or time.perf_counter() - wall0
    tokens = usage.prompt_tokens - prompt0
    return EngineSpeed(engine=engine, dtype=backend.dtype, tokens_per_s=tokens / elapsed,
                       prompts=usage.calls - calls0, tokens=tokens, seconds=elapsed)


def machine_key(cpu: CpuInfo | None = None) -> str:
    """What decides which engine is fastest: CPU model and flags, torch threads, the device."""
    cpu = cpu or cpu_info()
    flags = hashlib.sha256(" ".join(sorted(cpu.flags)).encode()).hexdigest()[:12]
    device = choose_device()
    if device == "cuda":
        device = f"cuda {torch.cuda.get_device_name()}"
    return f"{cpu.model_name} | flags {flags} | {torch.get_num_threads()} threads | {device}"


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none): other work skews measurements."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _default_dtype(engine: str) -> str:
    return dtype_name(choose_dtype("auto")) if engine == "transformers" else "auto"


def _parse_override(value: str) -> tuple[str, str]:
    engine, _, dtype = value.strip().partition(":")
    if engine not in KNOWN_ENGINES:
        raise ModelError(f"{ENGINE_ENV}={value!r}: unknown engine {engine!r}; "
                         f"use one of {', '.join(KNOWN_ENGINES)} (optionally ':dtype')")
    return engine, dtype or _default_dtype(engine)


def choice_file() -> Path:
    return cache_dir() / "engine-choice.json"


def _read_choices(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError:  # none yet, or a cache that cannot be read
        return {}
    except ValueError:
        logger.warning("%s: not valid JSON; measuring again", path)
        return {}
    return data if isinstance(data, dict) else {}


def _write_choices(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _from_json(entry: dict) -> EngineChoice:
    return EngineChoice(engine=entry["engine"], dtype=entry["dtype"],
                        speeds=tuple(EngineSpeed(**s) for s in entry.get("speeds", ())),
                        errors=dict(entry.get("errors", {})), measured_at=entry.get("measured_at", ""))


def engine_choice(model: str, measure_seconds: float = 10.0, refresh: bool = False,
                  *, factory: Factory | None = None) -> EngineChoice:
    """The fastest engine for ``model`` here, from the cache or measured now (``refresh`` measures
    again). With one engine available nothing is measured unless ``refresh``."""
    resolved = resolve_model(model)
    engines = available_engines(resolved)
    if resolved.kind == "embedding" or (len(engines) == 1 and not refresh):
        return EngineChoice(engines[0], _default_dtype(engines[0]))
    path = choice_file()
    machine = machine_key()
    lock = _choices_lock(path)  # None where the cache cannot be written: measure, store nothing
    # Held while measuring: two processes measuring at once would slow each other down.
    with lock or nullcontext():
        entry = _read_choices(path).get(machine, {}).get(resolved.name)
        if entry and not refresh and entry.get("engines") == engines:
            return _from_json(entry)
        speeds: list[EngineSpeed] = []
        errors: dict[str, str] = {}
        for engine in engines:
            try:
                speeds.append(measure_engine(model, engine, seconds=measure_seconds, factory=factory))
            except Exception as exc:  # an engine that cannot run here is simply not chosen
                errors[engine] = f"{type(exc).__name__}: {exc}"
                logger.warning("engine %s cannot run %s here: %s", engine, model, errors[engine])
        if not speeds:
            raise ModelError(f"no engine can run {model} here: "
                             + "; ".join(f"{e}: {m}" for e, m in errors.items()))
        best = max(speeds, key=lambda s: s.tokens_per_s)
        choice = EngineChoice(best.engine, best.dtype, tuple(speeds), errors,
                              datetime.now(timezone.utc).isoformat(timespec="seconds"))
        data = _read_choices(path)
        data.setdefault(machine, {})[resolved.name] = {
            "engine": choice.engine, "dtype": choice.dtype, "engines": engines,
            "speeds": [asdict(s) for s in speeds], "errors": errors,
            "measured_at": choice.measured_at, "measure_seconds": measure_seconds,
            "load_average": load_average()}
        if lock is not None:
            _write_choices(path, data)
    return choice


def _choices_lock(path: Path) -> FileLock | None:
    """The lock beside the choices file, or None (with a warning) where the cache directory cannot be written."""
    lock_file = path.with_name(f".{path.name}.lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_file.touch()
    except OSError as exc:
        logger.warning("cannot store the engine choice in %s (%s): measuring without storing it", path.parent,
                       exc.strerror or exc)
        return None
    return FileLock(str(lock_file))


def choose_engine(model: str, measure_seconds: float = 10.0, refresh: bool = False,
                  *, factory: Factory | None = None) -> tuple[str, str]:
    """(engine, dtype) for ``model`` on this machine; ``RANKWISE_ENGINE`` overrides the measurement."""
    override = os.environ.get(ENGINE_ENV)
    if override:
        return _parse_override(override)
    choice = engine_choice(model, measure_seconds, refresh, factory=factory)
    return choice.engine, choice.dtype


def flops_per_token(resolved: ResolvedModel) -> float | None:
    """About 2 x the parameters a prompt token passes through (embedding lookups and the LM head, which
    runs on the last position only, excluded); None when the weights are not on disk."""
    if resolved.gguf_file is not None:
        from gguf import GGUFReader

        reader = GGUFReader(resolved.gguf_file)
        skip = {"token_embd.weight", "output.weight"}
        return 2.0 * sum(int(t.n_elements) for t in reader.tensors if t.name not in skip)
    if resolved.hf_dir is not None:
        from safetensors import safe_open

        total = 0
        for file in sorted(resolved.hf_dir.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as fh:
                for name in fh.keys():
                    if "embed" in name or "lm_head" in name:
                        continue
                    shape = fh.get_slice(name).get_shape()
                    total += math.prod(shape)
        return 2.0 * total if total else None
    return None
