"""The single-page HTML report: the generated Markdown (docs/results.md) rendered with Python-Markdown, its
PNG figures embedded as data URIs, so the one file opens anywhere with nothing beside it."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import markdown

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #eee; }
code { background: #f6f6f6; padding: 0 0.2rem; }
pre { background: #f6f6f6; padding: 0.5rem; overflow-x: auto; }
"""

_IMG = re.compile(r'<img([^>]*?)src="([^"]+)"')


_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".svg": "image/svg+xml", ".webp": "image/webp"}


def embed_images(body: str, base: Path) -> tuple[str, list[Path]]:
    """Replace each ``<img src="relative.png">`` by a base64 data URI of the file under ``base``.

    Returns the new HTML and the image files embedded. A missing image raises FileNotFoundError naming it,
    so a report never ships with a broken picture.
    """
    embedded: list[Path] = []

    def sub(m: re.Match[str]) -> str:
        src = m.group(2)
        if src.startswith(("data:", "http://", "https://")):
            return m.group(0)
        path = (base / src).resolve()
        if base.resolve() not in path.parents:  # a note's link may not pull other files into the page
            raise FileNotFoundError(f"report image {src!r} lies outside {base}; link images inside it (e.g. figures/NAME.png)")
        if not path.is_file():
            raise FileNotFoundError(
                f"report image {src!r} not found under {base}: a figure the report did not write (a run's notes.md may link it); "
                "fix the link or put the file there"
            )
        mime = _MIME.get(path.suffix.lower())
        if mime is None:
            raise FileNotFoundError(f"report image {src!r} is not an image the page can embed ({', '.join(sorted(_MIME))})")
        embedded.append(path)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'<img{m.group(1)}src="data:{mime};base64,{data}"'

    return _IMG.sub(sub, body), embedded


def render_html(markdown_text: str, base: Path, title: str = "overlooked: results") -> str:
    """A self-contained HTML page from the report's Markdown; images resolved relative to ``base``.

    >>> page = render_html("# T\\n\\n| a |\\n|---|\\n| 1 |\\n", Path("."))
    >>> "<table>" in page and "<h1" in page
    True
    """
    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])
    body, _ = embed_images(body, base)
    return f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
