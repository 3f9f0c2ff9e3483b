"""How much memory a model needs in the dtype it runs in, and whether this machine has it free.

Estimates, calibrated on benchmarks/results/memory_load.md (qwen2.5-0.5b and 1.5b, transformers bf16 on CPU;
1.5b: 4.4 GB resident and 4.4 GB peak from a bf16 copy, 10.4 GB peak from an fp32 copy):

- resident ~= weights in the run dtype + RUNTIME_BYTES (torch, tokenizer, activations of a rerank);
- loading peak ~= resident, plus the weights as stored when they are stored in another dtype (the stored
  file is mapped whole while it is cast). GGUF models are converted or derived in the run dtype.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GB = 10**9
RUNTIME_BYTES = int(1.3 * GB)
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class MemoryNeed:
    """Estimated bytes a model holds once loaded (``resident``) and at most while loading (``peak``)."""

    parameters: int
    dtype: str
    resident: int
    peak: int

    def describe(self) -> str:
        return (f"~{self.resident / GB:.1f} GB resident, ~{self.peak / GB:.1f} GB peak while loading "
                f"({self.parameters / 1e9:.2f}B parameters in {self.dtype})")


def memory_need(parameters: int, dtype: str, stored: str | None = None) -> MemoryNeed:
    """The estimate for ``parameters`` weights run in ``dtype`` (float32, bfloat16 or float16), stored on
    disk in ``stored`` (default: the run dtype)."""
    weights = parameters * _BYTES.get(dtype, 4)
    resident = weights + RUNTIME_BYTES
    cast = parameters * _BYTES.get(stored, 4) if stored and stored != dtype else 0
    return MemoryNeed(parameters, dtype, resident, resident + cast)


def stored_dtype(hf_dir: Path | None) -> str | None:
    """The dtype a transformers directory's weights are stored in (its config.json), None where unknown."""
    import json

    try:
        config = json.loads((Path(hf_dir) / "config.json").read_text()) if hf_dir is not None else {}
    except (OSError, ValueError):
        return None
    value = config.get("dtype") or config.get("torch_dtype")
    return value if isinstance(value, str) else None


def parameter_count(gguf_file: Path | None = None, hf_dir: Path | None = None) -> int | None:
    """Every weight of a GGUF file or a safetensors directory (headers only); None if neither is on disk."""
    if gguf_file is not None:
        from gguf import GGUFReader

        return sum(int(t.n_elements) for t in GGUFReader(gguf_file).tensors)
    if hf_dir is not None:
        import math

        from safetensors import safe_open

        total = 0
        for file in sorted(Path(hf_dir).glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as fh:
                total += sum(math.prod(fh.get_slice(name).get_shape()) for name in fh.keys())
        return total or None
    return None


def available_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (what can be allocated without swapping); None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(name: str, need: MemoryNeed, available: int | None = None) -> bool:
    """Warn (and return False) when loading ``name`` may not fit in the memory available now."""
    free = available if available is not None else available_bytes()
    if free is None or need.peak <= free:
        return True
    log.warning("loading %s needs %s; %.1f GB is available now: the out-of-memory killer may end this run "
                "(free memory, or choose a smaller model or dtype)", name, need.describe(), free / GB)
    return False
