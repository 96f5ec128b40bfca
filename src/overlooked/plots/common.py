"""What every figure module shares: the non-interactive backend and the one PNG writer."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SOFTWARE = "overlooked"  # the start of the PNG "Software" text every figure written here carries


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 120) -> Path:
    """Lay out, write as PNG (creating the folder) and close ``fig``. The PNG's "Software" text says
    ``overlooked`` (see :func:`written_by_overlooked`)."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, metadata={"Software": f"{SOFTWARE} (matplotlib {matplotlib.__version__})"})
    plt.close(fig)
    return path


def written_by_overlooked(path: str | Path) -> bool:
    """Whether ``path`` is a PNG that :func:`save_figure` wrote (its "Software" text starts with
    ``overlooked``); False for any other file, an unreadable one included."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.format == "PNG" and str(image.info.get("Software", "")).startswith(SOFTWARE)
    except (OSError, ValueError):  # PIL's UnidentifiedImageError is an OSError
        return False
