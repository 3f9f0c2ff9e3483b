"""Command-line entry point: ``rankwise``. Errors in user input print one line and exit non-zero."""

from __future__ import annotations

import importlib
import sys

from rankwise.cli.app import app
from rankwise.errors import RankwiseError

# Each module registers its commands on ``app``; a module not yet written is skipped.
_COMMAND_MODULES = ("retrieval", "models", "rerank", "demo", "serve")

for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"rankwise.cli.{_name}")
    except ModuleNotFoundError as exc:  # pragma: no cover - only while a module is missing
        if exc.name != f"rankwise.cli.{_name}":
            raise


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a RankwiseError becomes 'error: <message>' on stderr and exit code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except RankwiseError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except FileNotFoundError as err:
        print(f"error: {err.filename}: file not found", file=sys.stderr)
        sys.exit(2)
    except Exception as err:  # click's own usage errors
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, click.exceptions.Abort):
            sys.exit(1)
        raise
