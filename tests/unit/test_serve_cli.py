"""`rankwise serve` refuses bad settings in one line, before it loads a model."""

from __future__ import annotations

import pytest

from rankwise.cli import main


@pytest.mark.parametrize("args, message", [
    (["--method", "pointwise.yesno"], "did you mean pointwise.yes_no"),
    (["--method", "pointwise.yes_no", "--long-documents", "drop"], "long-documents must be one of truncate, reject"),
    (["--method", "pointwise.yes_no", "--max-documents", "0"], "max-documents must be at least 1"),
    (["--method", "pointwise.yes_no", "--request-timeout", "0"], "request-timeout must be positive"),
    (["--method", "pointwise.yes_no", "--api-key", " "], "api-key must not be empty"),
    (["--method", "pointwise.yes_no", "--chunk-prompts", "0"], "chunk-prompts must be at least 1"),
    (["--method", "pointwise.yes_no", "--max-in-flight", "0"], "max-in-flight must be at least 1"),
    (["--method", "pointwise.yes_no", "--header-timeout", "0"], "header-timeout must be positive"),
])
def test_bad_settings_exit_2_with_one_line(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--model", "no-such-model-is-loaded", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_help_lists_the_limits(capsys):
    main(["serve", "--help"])
    out = capsys.readouterr().out
    for flag in ("--max-documents", "--max-document-chars", "--long-documents", "--max-body-bytes",
                 "--request-timeout", "--api-key", "RANKWISE_API_KEY", "--batch-wait-ms", "--max-batch-prompts",
                 "--chunk-prompts", "--max-in-flight", "--header-timeout", "--body-timeout", "--keep-alive-timeout",
                 "--guard"):
        assert flag in out
