"""Hardware awareness: the dtype follows the CPU's features, never a fixed default."""

from __future__ import annotations

import itertools
import logging

import pytest
import torch

from rankwise.errors import InputError, ModelError
from rankwise.llm import hardware
from rankwise.llm.hardware import (
    CpuInfo,
    choose_device,
    choose_dtype,
    cpu_info,
    has_native_bf16,
    measure_matmul_gflops,
    torch_cpu_capability,
)

_BASE_X86 = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
             "sse2 ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology cpuid pni pclmulqdq "
             "ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor "
             "lahf_lm abm fsgsbase bmi1 avx2 smep bmi2 erms invpcid adx smap clflushopt clwb sha_ni "
             "xsaveopt xsavec xgetbv1 xsaves")


def _cpuinfo(model: str, vendor: str, extra_flags: str = "") -> str:
    """Two processor blocks, as /proc/cpuinfo prints them."""
    block = (f"processor\t: {{n}}\nvendor_id\t: {vendor}\ncpu family\t: 25\nmodel name\t: {model}\n"
             f"flags\t\t: {_BASE_X86} {extra_flags}\nbugs\t\t: sysret_ss_attrs\n")
    return block.format(n=0) + "\n" + block.format(n=1)


# AMD EPYC (Zen 3), AVX2 only: no avx512, no bf16 instructions (measured: bf16 matmul ~100x slower).
AMD_EPYC_AVX2 = _cpuinfo("AMD EPYC 7B13", "AuthenticAMD", "sse4a misalignsse 3dnowprefetch topoext vaes")
# Intel Xeon (Sapphire Rapids) with AMX.
INTEL_AMX = _cpuinfo("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", "GenuineIntel",
                     "avx512f avx512dq avx512cd avx512bw avx512vl avx_vnni avx512_bf16 avx512_vnni "
                     "avx512_fp16 amx_bf16 amx_tile amx_int8")
# AMD EPYC (Zen 4/5) with avx512_bf16 and no AMX (measured there: bf16 matmul ~3x faster than fp32).
AMD_EPYC_AVX512_BF16 = _cpuinfo("AMD EPYC", "AuthenticAMD",
                                "avx512f avx512dq avx512bw avx512vl avx_vnni avx512_bf16 avx512_vnni")
# Intel Xeon (model 207) whose hypervisor hides AMX: avx512_bf16 only, bf16 matmul 1.6x SLOWER than fp32
# and qwen2.5-0.5b prefill 185 vs 269 tok/s (measured 2026-12-02).
INTEL_AMX_HIDDEN = _cpuinfo("Intel(R) Xeon(R) Processor", "GenuineIntel",
                            "avx512f avx512dq avx512cd avx512bw avx512vl avx_vnni avx512_bf16 avx512_vnni "
                            "avx512_fp16")


def test_parses_the_first_processor_block():
    cpu = cpu_info(AMD_EPYC_AVX2)
    assert cpu.model_name == "AMD EPYC 7B13"
    assert cpu.vendor == "AuthenticAMD"
    assert {"avx2", "fma", "f16c"} <= cpu.flags
    assert not any(f.startswith("avx512") for f in cpu.flags)


def test_arm_cpuinfo_uses_features_line():
    cpu = cpu_info("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd bf16 i8mm\n"
                   "CPU implementer\t: 0x41\n")
    assert cpu.vendor == "0x41"
    assert cpu.flags == frozenset({"fp", "asimd", "bf16", "i8mm"})
    assert choose_dtype("auto", "cpu", cpu) == torch.float32  # not known to be fast: fp32


def test_describe_names_the_feature_class_behind_one_model_name():
    assert cpu_info(INTEL_AMX).describe() == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz (AMX)"
    assert cpu_info(INTEL_AMX_HIDDEN).describe() == "Intel(R) Xeon(R) Processor (avx512_bf16, no AMX)"
    assert cpu_info(AMD_EPYC_AVX2).describe() == "AMD EPYC 7B13 (AVX2, no bf16)"
    assert CpuInfo("Apple M2", "Apple", frozenset()).describe() == "Apple M2"  # flags unknown: name only


def test_avx2_only_cpu_gets_float32():
    cpu = cpu_info(AMD_EPYC_AVX2)
    assert not has_native_bf16(cpu.flags)
    assert choose_dtype("auto", "cpu", cpu) == torch.float32


def test_auto_never_picks_bf16_without_native_bf16_instructions():
    """Proof by exhaustion over every combination of the other SIMD / matrix features a CPU may have:
    without amx_bf16 or avx512_bf16, dtype='auto' on the CPU is float32, whatever else is present."""
    others = ["avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
              "avx512_fp16", "amx_tile", "amx_int8", "amx_fp16", "asimd", "bf16", "sve"]
    base = cpu_info(AMD_EPYC_AVX2)
    for n in range(len(others) + 1):
        for combo in itertools.combinations(others, n):
            cpu = CpuInfo(base.model_name, base.vendor, base.flags | frozenset(combo))
            assert choose_dtype("auto", "cpu", cpu) == torch.float32, combo


def test_auto_on_this_avx2_machine_class_when_device_is_auto(monkeypatch):
    """The defaults chain (device auto -> cpu, cpu from /proc/cpuinfo) also ends in float32."""
    monkeypatch.setattr(hardware, "cpu_info", lambda text=None: CpuInfo("AMD EPYC 7B13", "AuthenticAMD",
                                                                        frozenset({"avx2", "fma", "f16c"})))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert choose_device() == "cpu"
    assert choose_dtype() == torch.float32


def test_amx_cpu_gets_bfloat16():
    cpu = cpu_info(INTEL_AMX)
    assert has_native_bf16(cpu.flags)
    assert choose_dtype("auto", "cpu", cpu) == torch.bfloat16


def test_avx512_bf16_without_amx_follows_the_measurement(monkeypatch):
    """avx512_bf16 alone goes either way (Zen 4 fast, AMX-hidden Xeon slow): the probe decides."""
    monkeypatch.setattr(hardware, "bf16_faster_than_fp32", lambda: True)
    assert choose_dtype("auto", "cpu", cpu_info(AMD_EPYC_AVX512_BF16)) == torch.bfloat16
    monkeypatch.setattr(hardware, "bf16_faster_than_fp32", lambda: False)
    assert choose_dtype("auto", "cpu", cpu_info(INTEL_AMX_HIDDEN)) == torch.float32


def test_amx_and_avx2_cpus_are_decided_without_measuring(monkeypatch):
    def must_not_measure() -> bool:
        raise AssertionError("measured a CPU whose flags decide")

    monkeypatch.setattr(hardware, "bf16_faster_than_fp32", must_not_measure)
    assert choose_dtype("auto", "cpu", cpu_info(INTEL_AMX)) == torch.bfloat16
    assert choose_dtype("auto", "cpu", cpu_info(AMD_EPYC_AVX2)) == torch.float32


def test_the_probe_compares_measured_speeds_once_per_process(monkeypatch):
    speeds = {torch.bfloat16: 300.0, torch.float32: 180.0}
    calls = []

    def fake_measure(dtype, seconds=1.0, n=1024, device="cpu"):
        calls.append(dtype)
        return speeds[dtype]

    monkeypatch.setattr(hardware, "measure_matmul_gflops", fake_measure)
    hardware.bf16_faster_than_fp32.cache_clear()
    try:
        assert hardware.bf16_faster_than_fp32() is True
        assert hardware.bf16_faster_than_fp32() is True
        assert calls == [torch.bfloat16, torch.float32]  # measured once
        speeds[torch.bfloat16] = 110.0
        hardware.bf16_faster_than_fp32.cache_clear()
        assert hardware.bf16_faster_than_fp32() is False
    finally:
        hardware.bf16_faster_than_fp32.cache_clear()


def test_this_machine_follows_its_flags_and_probe():
    cpu = cpu_info()
    if "amx_bf16" in cpu.flags:
        expected = torch.bfloat16
    elif "avx512_bf16" in cpu.flags:
        expected = torch.bfloat16 if hardware.bf16_faster_than_fp32() else torch.float32
    else:
        expected = torch.float32
    assert choose_dtype("auto", "cpu") == expected


def test_explicit_dtype_is_honoured():
    amx, avx2 = cpu_info(INTEL_AMX), cpu_info(AMD_EPYC_AVX2)
    assert choose_dtype("float32", "cpu", amx) == torch.float32
    assert choose_dtype("fp16", "cpu", amx) == torch.float16
    assert choose_dtype(torch.bfloat16, "cpu", amx) == torch.bfloat16
    assert choose_dtype("float32", "cpu", avx2) == torch.float32


def test_explicit_bf16_on_avx2_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="rankwise.llm.hardware"):
        assert choose_dtype("bfloat16", "cpu", cpu_info(AMD_EPYC_AVX2)) == torch.bfloat16
    assert "bfloat16" in caplog.text and "AMD EPYC 7B13" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rankwise.llm.hardware"):
        choose_dtype("bfloat16", "cpu", cpu_info(INTEL_AMX))
    assert caplog.text == ""


def test_unknown_dtype_is_an_input_error():
    with pytest.raises(InputError, match="unknown dtype 'int3'"):
        choose_dtype("int3", "cpu", cpu_info(INTEL_AMX))


def test_gpu_dtypes(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choose_dtype("auto", "cuda") == torch.bfloat16
    assert choose_dtype("auto", "cuda:1") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_dtype("auto", "cuda") == torch.float32
    assert choose_dtype("auto", "mps") == torch.float32


def test_choose_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert choose_device("auto") == "cpu"
    assert choose_device("CPU") == "cpu"
    with pytest.raises(ModelError, match="no CUDA device"):
        choose_device("cuda")
    with pytest.raises(ModelError, match="MPS"):
        choose_device("mps")
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        choose_device("tpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert choose_device() == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device() == "cuda"
    assert choose_device("cuda:1") == "cuda:1"


def test_without_proc_cpuinfo_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(hardware, "_PROC_CPUINFO", tmp_path / "missing")
    monkeypatch.setattr(hardware.platform, "system", lambda: "Windows")
    cpu = cpu_info()
    assert cpu.model_name and cpu.flags == frozenset()
    assert choose_dtype("auto", "cpu", cpu) == torch.float32


def test_macos_fallback_reads_sysctl(monkeypatch, tmp_path):
    answers = {"machdep.cpu.brand_string": "Apple M2", "machdep.cpu.features": "",
               "machdep.cpu.leaf7_features": ""}
    monkeypatch.setattr(hardware, "_PROC_CPUINFO", tmp_path / "missing")
    monkeypatch.setattr(hardware.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(hardware.platform, "machine", lambda: "arm64")
    monkeypatch.setattr(hardware, "_sysctl", lambda name: answers.get(name, ""))
    cpu = cpu_info()
    assert (cpu.model_name, cpu.vendor) == ("Apple M2", "Apple")
    assert choose_dtype("auto", "cpu", cpu) == torch.float32


def test_torch_cpu_capability():
    capability = torch_cpu_capability()
    assert isinstance(capability, str) and capability  # e.g. "AVX2", "AVX512", "DEFAULT"


def test_measure_matmul_gflops_is_positive_and_bounded_in_time():
    import time

    start = time.perf_counter()
    assert measure_matmul_gflops("float32", seconds=0.2, n=256) > 0
    assert measure_matmul_gflops(torch.bfloat16, seconds=0.2, n=512) > 0
    assert time.perf_counter() - start < 5
