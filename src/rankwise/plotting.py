"""matplotlib for the figures rankwise writes (training curves, bench plots): file output only."""

from __future__ import annotations

from rankwise.errors import RankwiseError


def pyplot(required_by: str | None = None):
    """``matplotlib.pyplot`` on the Agg backend (PNG files, no display); None where matplotlib is not
    installed, or, given ``required_by`` (the extra that installs it), an error saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        if required_by is None:
            return None
        raise RankwiseError(f"the plot needs matplotlib: pip install 'rankwise[{required_by}]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
