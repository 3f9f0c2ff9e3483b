"""Converting a GGUF file once into a transformers directory (for the transformers engine)."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from rankwise.errors import ModelError
from rankwise.llm.models.catalogue import cache_dir, cache_required
from rankwise.llm.models.fetching import _lock, _publish_dir, file_sha256
from rankwise.llm.models.inventory import touch_last_use

logger = logging.getLogger(__name__)


STORED_DTYPES = ("float32", "bfloat16", "float16")


def hf_dir_for_gguf(gguf_file: str | Path, dtype: str = "float32") -> Path:
    """A transformers directory converted once from a GGUF file (dequantised), stored in ``dtype``.

    Store in the dtype the engine runs in: a bf16 run of a bf16 copy loads exactly the weights an fp32 copy
    cast to bf16 gives, from half the disk, and its peak memory stays near its resident memory (reading an
    fp32 copy maps the whole fp32 file while casting: qwen2.5-1.5b peaked at 10.4 GB for 4.6 GB resident).
    Cached as ``cache_dir()/hf/<stem>-<sha8>[-<dtype>]/``; a copy in another dtype is derived from an fp32
    copy already there (no second dequantisation). Loading a GGUF file in transformers takes 15-80 s,
    loading the saved directory about a second.
    """
    if dtype not in STORED_DTYPES:
        raise ModelError(f"cannot store a converted model in {dtype!r}: use one of {', '.join(STORED_DTYPES)}")
    gguf_file = Path(gguf_file).resolve()
    sha = file_sha256(gguf_file)
    fp32 = cache_dir() / "hf" / f"{gguf_file.stem}-{sha[:8]}"
    target = fp32 if dtype == "float32" else fp32.with_name(f"{fp32.name}-{dtype}")
    if not (target / "config.json").is_file():
        with cache_required(target, "the transformers copy of the GGUF model"), _lock(target):
            if (target / "config.json").is_file():
                pass
            elif (fp32 / "config.json").is_file():
                _derive(fp32, target, dtype)
            else:
                _convert_gguf(gguf_file, sha, target, dtype)
    touch_last_use(target)  # `rankwise models cache` shows it
    return target


def _derive(fp32: Path, target: Path, dtype: str) -> None:
    """``target``: the converted fp32 copy ``fp32`` stored in ``dtype`` (its tokenizer and source record kept)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.warning("storing %s in %s once, so that loading it does not read the fp32 copy: %s", fp32.name, dtype,
                   target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        AutoModelForCausalLM.from_pretrained(fp32, dtype=getattr(torch, dtype)).save_pretrained(tmp)
        AutoTokenizer.from_pretrained(fp32).save_pretrained(tmp)
        source = fp32 / "rankwise-source.json"
        record = json.loads(source.read_text()) if source.is_file() else {}
        (tmp / "rankwise-source.json").write_text(json.dumps({**record, "dtype": dtype, "derived_from": fp32.name},
                                                             indent=2) + "\n")
        _publish_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _convert_gguf(gguf_file: Path, sha: str, target: Path, dtype: str) -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.warning("converting %s to a transformers directory, once (dequantising takes 15-80 s): %s",
                   gguf_file.name, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    # Recent transformers keep GGUF weights packed (not serializable) unless told to dequantise.
    options = {"quantization_config": transformers.GgufConfig(dequantize=True)} \
        if hasattr(transformers, "GgufConfig") else {}
    try:
        try:
            model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name,
                                                         dtype=torch.float32, **options)
            tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        except Exception as exc:  # whatever the parser trips on, the user needs the file named
            raise ModelError(f"{gguf_file}: transformers cannot load this GGUF file "
                             f"({type(exc).__name__}: {exc})") from exc
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:  # the weights are dense now; save them as a plain checkpoint
            quantizer.remove_quantization_config(model)
        model.to(getattr(torch, dtype)).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "rankwise-source.json").write_text(json.dumps(
            {"gguf_file": gguf_file.name, "gguf_sha256": sha, "dtype": dtype,
             "transformers": transformers.__version__},
            indent=2) + "\n")
        _publish_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
