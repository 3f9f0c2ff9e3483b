"""What this machine can compute fast: device, CPU features, and the dtype to run models in.

CPUs differ by two orders of magnitude in bf16 speed: with AMX bf16 matmuls are several times faster
than fp32, while on AVX2-only CPUs torch emulates bf16 about 100x slower than fp32. Between the two,
avx512_bf16 without AMX goes either way (AMD Zen 4: bf16 ~3x faster; an Intel Xeon whose hypervisor
hides AMX: bf16 1.6x slower). So ``dtype="auto"`` picks bf16 with AMX, fp32 without bf16 instructions,
and on avx512_bf16-only CPUs whichever a short matmul probe measures faster.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from rankwise.errors import InputError, ModelError

logger = logging.getLogger(__name__)

_PROC_CPUINFO = Path("/proc/cpuinfo")

# CPU flags that decide how fast a model runs (shown by `rankwise env`).
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
AMX_BF16_FLAG = "amx_bf16"
NATIVE_FP16_FLAGS = frozenset({"amx_fp16", "avx512_fp16"})

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as the operating system describes it (flags as /proc/cpuinfo spells them)."""

    model_name: str
    vendor: str
    flags: frozenset[str]

    @property
    def cpu_class(self) -> str:
        """The feature class that decides model speed ("AMX", "avx512_bf16, no AMX", "AVX2, no bf16",
        "no AVX2"; "" without flags): timings compare only within one class."""
        if AMX_BF16_FLAG in self.flags:
            return "AMX"
        if "avx512_bf16" in self.flags:
            return "avx512_bf16, no AMX"
        if "avx2" in self.flags:
            return "AVX2, no bf16"
        return "no AVX2" if self.flags else ""

    def describe(self) -> str:
        """The model name and the feature class, e.g. "Intel(R) Xeon(R) Processor (avx512_bf16, no AMX)":
        one model name covers CPUs whose bf16 speed differs 100x."""
        return f"{self.model_name} ({self.cpu_class})" if self.cpu_class else self.model_name


def cpu_info(cpuinfo_text: str | None = None) -> CpuInfo:
    """Describe the CPU from ``cpuinfo_text`` (the format of /proc/cpuinfo) or from this machine.

    Where /proc/cpuinfo does not exist (macOS, Windows) the model name comes from sysctl or
    ``platform`` and the flags may be empty, which makes ``dtype="auto"`` choose fp32.
    """
    if cpuinfo_text is None:
        try:
            cpuinfo_text = _PROC_CPUINFO.read_text(errors="replace")
        except OSError:
            return _cpu_info_without_proc()
    return _parse_cpuinfo(cpuinfo_text)


def _parse_cpuinfo(text: str) -> CpuInfo:
    """Fields of the first processor block; x86 says 'flags', ARM says 'Features'."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    model = (fields.get("model name") or fields.get("hardware") or fields.get("cpu model")
             or platform.processor() or "unknown")
    vendor = fields.get("vendor_id") or fields.get("cpu implementer") or "unknown"
    flags = fields.get("flags") or fields.get("features") or ""
    return CpuInfo(model_name=model, vendor=vendor, flags=frozenset(flags.lower().split()))


def _sysctl(name: str) -> str:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _cpu_info_without_proc() -> CpuInfo:
    if platform.system() == "Darwin":
        model = _sysctl("machdep.cpu.brand_string")
        vendor = _sysctl("machdep.cpu.vendor") or ("Apple" if platform.machine() == "arm64" else "")
        # Intel Macs list features in upper case without underscores ("AVX2", "AVX512F").
        flags = f"{_sysctl('machdep.cpu.features')} {_sysctl('machdep.cpu.leaf7_features')}"
        return CpuInfo(model or platform.processor() or "unknown", vendor or "unknown",
                       frozenset(flags.lower().split()))
    return CpuInfo(platform.processor() or platform.machine() or "unknown", "unknown", frozenset())


def has_native_bf16(flags: frozenset[str] | set[str]) -> bool:
    """True where the CPU computes bf16 in hardware (AMX or AVX512-BF16)."""
    return bool(NATIVE_BF16_FLAGS & set(flags))


@lru_cache(maxsize=1)
def bf16_faster_than_fp32() -> bool:
    """Measured once per process on this CPU: do bf16 matmuls beat fp32 ones (~0.5 s)?"""
    bf16 = measure_matmul_gflops(torch.bfloat16, seconds=0.2)
    fp32 = measure_matmul_gflops(torch.float32, seconds=0.2)
    logger.info("bf16 %.0f vs fp32 %.0f GFLOP/s on this CPU (avx512_bf16 without AMX): %s", bf16, fp32,
                "bf16" if bf16 > fp32 else "float32")
    return bf16 > fp32


def cpu_prefers_bf16(cpu: CpuInfo) -> bool:
    """bf16 with AMX; fp32 without bf16 instructions; measured where only avx512_bf16 is present."""
    if AMX_BF16_FLAG in cpu.flags:
        return True
    if not has_native_bf16(cpu.flags):
        return False
    return bf16_faster_than_fp32()


def choose_device(pref: str = "auto") -> str:
    """'cuda', 'mps' or 'cpu': the preference if it is available, else the best one present."""
    pref = pref.lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if pref == "cpu":
        return "cpu"
    if pref.split(":")[0] == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"device {pref!r} requested but torch sees no CUDA device "
                             f"(torch {torch.__version__})")
        return pref
    if pref == "mps":
        if not torch.backends.mps.is_available():
            raise ModelError("device 'mps' requested but torch sees no Apple GPU (MPS)")
        return pref
    raise InputError(f"unknown device {pref!r}: use auto, cpu, cuda, cuda:N or mps")


def dtype_name(dtype: torch.dtype) -> str:
    """torch.bfloat16 -> 'bfloat16'."""
    return str(dtype).removeprefix("torch.")


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """'float32' / 'fp32' / 'bfloat16' / 'bf16' / 'float16' / 'fp16' (or a torch.dtype) -> torch.dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        raise InputError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16") from None


def choose_dtype(dtype: str | torch.dtype = "auto", device: str | None = None,
                 cpu: CpuInfo | None = None) -> torch.dtype:
    """The dtype to run a model in on ``device`` (default: ``choose_device()``).

    "auto": bf16 on CUDA devices that support it, on CPUs with AMX and on avx512_bf16 CPUs where it
    measures faster (``cpu_prefers_bf16``); fp32 on every other CPU, on MPS and on older GPUs. An explicit dtype is honoured, with a warning when it is
    half precision on a CPU that would emulate it (about 100x slower than fp32 there).
    """
    device = device or choose_device()
    kind = device.split(":")[0]
    if isinstance(dtype, str) and dtype.lower() == "auto":
        if kind == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        if kind == "cpu":
            cpu = cpu or cpu_info()
            return torch.bfloat16 if cpu_prefers_bf16(cpu) else torch.float32
        return torch.float32
    chosen = parse_dtype(dtype)
    if kind == "cpu" and chosen in (torch.bfloat16, torch.float16):
        cpu = cpu or cpu_info()
        native = NATIVE_BF16_FLAGS if chosen == torch.bfloat16 else NATIVE_FP16_FLAGS
        if not native & cpu.flags:
            logger.warning("%s requested on %s, which has no %s instructions: torch emulates it, "
                           "typically far slower than float32 (dtype='auto' would pick float32)",
                           dtype_name(chosen), cpu.model_name, " / ".join(sorted(native)))
    return chosen


def torch_cpu_capability() -> str:
    """The SIMD level torch's CPU kernels were dispatched to ('AVX512', 'AVX2', 'DEFAULT', ...)."""
    return torch.backends.cpu.get_cpu_capability()


def measure_matmul_gflops(dtype: str | torch.dtype, seconds: float = 1.0, n: int = 1024,
                          device: str = "cpu") -> float:
    """Measured GFLOP/s of square ``n x n`` matmuls in ``dtype``, repeated for about ``seconds``.

    At least one matmul runs, so where the dtype is emulated (bf16 on AVX2-only CPUs, ~1 GFLOP/s)
    n=1024 takes about 2 s whatever ``seconds`` says. Small matrices would finish sooner but
    understate the peak badly when other processes share the cores.
    """
    dt = parse_dtype(dtype)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dt)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dt)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    torch.matmul(a[:64, :64], b[:64, :64])  # warm-up: kernel selection, thread pool
    sync()
    flops, start = 0, time.perf_counter()
    while True:
        torch.matmul(a, b)
        sync()
        flops += 2 * n**3
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return flops / elapsed / 1e9
