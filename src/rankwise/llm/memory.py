"""How much memory a model needs in the dtype it runs in, and whether this machine has it free.

Estimates, calibrated on one measurement (MODELS.md: qwen2.5-1.5b, transformers bf16 on CPU: ~5.4 GB
resident, ~10.9 GB peak while loading, the peak holding a transient float32 copy of the weights):

- resident ~= weights in the run dtype + RUNTIME_BYTES (torch, tokenizer, activations);
- loading peak ~= weights in float32 + weights in the run dtype + LOADING_BYTES.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GB = 10**9
RUNTIME_BYTES = int(2.3 * GB)
LOADING_BYTES = int(1.6 * GB)
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


def memory_need(parameters: int, dtype: str) -> MemoryNeed:
    """The estimate for ``parameters`` weights run in ``dtype`` (float32, bfloat16 or float16)."""
    weights = parameters * _BYTES.get(dtype, 4)
    resident = weights + RUNTIME_BYTES
    return MemoryNeed(parameters, dtype, resident, max(resident, parameters * 4 + weights + LOADING_BYTES))


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
