"""``rankwise models show``: a profile by its name or by a model of its family; every bundled profile shows."""

from __future__ import annotations

import pytest

from rankwise.cli import main
from rankwise.llm.profiles import profiles


def _show(name: str, capsys) -> tuple[int, str, str]:
    code = 0
    try:
        main(["models", "show", name])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, " ".join(captured.out.split()), captured.err


@pytest.mark.parametrize("name, shown", [
    ("Soyoung97/RankT5-3b", ["rankt5", "pointwise.logit", "<extra_id_10>", "seq2seq"]),
    ("liuwenhan/reasonrank-7B", ["reasonrank", "listwise.window", "reasoning_tokens=3072", '"[n]"']),
    ("BAAI/bge-reranker-v2-minicpm-layerwise", ["bge_reranker_minicpm_layerwise", "layer 28", "'<s>{user}'"]),
])
def test_a_model_shows_its_family_profile(name, shown, capsys):
    code, out, _ = _show(name, capsys)
    assert code == 0 and all(s in out for s in shown), out


def test_every_profile_shows_by_name(capsys):
    for profile in profiles():
        code, out, _ = _show(profile.name, capsys)
        assert code == 0 and f"profile │ {profile.name}" in out and profile.source.split()[0] in out


def test_a_model_without_a_profile_is_named(capsys):
    code, _, err = _show("qwen2.5-0.5b", capsys)
    assert code == 2 and "no profile matches 'qwen2.5-0.5b'" in err and "rankt5" in err
