"""Command-line entry point: ``rankwise``. Errors in user input print one line and exit non-zero."""

from __future__ import annotations

import importlib
import pkgutil
import sys

from rankwise.cli.app import app
from rankwise.errors import RankwiseError

# Every module of this package but the plumbing registers its commands on ``app`` when imported.
_NOT_COMMANDS = {"app", "common", "inputs", "measures", "outputs", "__main__"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _NOT_COMMANDS and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a RankwiseError becomes 'error: <message>' on stderr and exit code 2."""
    try:
        code = app(args=argv, standalone_mode=False)  # a command's typer.Exit(n) comes back as n
    except RankwiseError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except FileNotFoundError as err:
        print(f"error: {err.filename}: file not found", file=sys.stderr)
        sys.exit(2)
    except Exception as err:  # click's own usage errors
        usage_errors, aborts = _click_exception_classes()
        if isinstance(err, usage_errors):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, aborts):
            sys.exit(1)
        raise
    if isinstance(code, int) and code:
        sys.exit(code)


def _click_exception_classes() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """click's ClickException and Abort, and their twins in the click copy typer >= 0.24 vendors."""
    import click
    import typer

    modules = [click.exceptions, getattr(typer, "exceptions", None)]
    try:
        from typer._click import exceptions as vendored
    except ImportError:
        pass
    else:
        modules.append(vendored)
    usage = tuple(m.ClickException for m in modules if hasattr(m, "ClickException"))
    aborts = tuple(m.Abort for m in modules if hasattr(m, "Abort"))
    return usage, aborts
