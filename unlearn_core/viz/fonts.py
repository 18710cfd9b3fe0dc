"""One font for every exported figure, carried inside the SVG.

Chromium lays a figure's text out with a font it finds on this machine; an SVG only names that font. A reader,
an editor or a journal's pipeline without it substitutes another one with other widths, and labels overlap or leave
the canvas the preset tests measured. So exports name one family, Chromium measures with it, and the SVG carries the
glyphs it uses as an @font-face (subset, WOFF): Liberation Sans (Arial's metrics, what Chromium on Debian already
used for the theme's Helvetica/Arial) where fontconfig has it, else DejaVu Sans (matplotlib ships a copy). PDFs embed
their fonts already (Chromium's printer subsets them).
"""

from __future__ import annotations

import base64
import functools
import html
import io
import re
import shutil
import subprocess
from pathlib import Path

CANDIDATES = ("Liberation Sans", "DejaVu Sans")
_BUNDLED = {"normal": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf"}  # matplotlib's copy of the last candidate
_TEXT = re.compile(r"<(text|tspan)\b[^>]*>([^<]*)", re.S)
_BOLD = re.compile(r"font-weight:\s*(bold|[6-9]00)")


def _fc_match(pattern: str) -> tuple[str, str]:
    if not shutil.which("fc-match"):
        return "", ""
    try:
        out = subprocess.run(["fc-match", "-f", "%{family}\t%{file}", pattern], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "", ""
    family, _, path = out.partition("\t")
    return family, path


@functools.cache
def family() -> str:
    """The export family: the first candidate fontconfig really has (not a substitute), else the bundled one."""
    for name in CANDIDATES:
        found, path = _fc_match(name)
        if name in found and Path(path).is_file():
            return name
    return CANDIDATES[-1]


def css_family() -> str:
    return f"{family()}, sans-serif"


@functools.cache
def font_file(weight: str = "normal") -> Path | None:
    """The file Chromium uses for the export family (fontconfig's answer), else matplotlib's DejaVu Sans."""
    name = family()
    found, path = _fc_match(name + (":bold" if weight == "bold" else ""))
    if name in found and Path(path).is_file():
        return Path(path)
    if name != CANDIDATES[-1]:
        return None
    try:
        import matplotlib

        path = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / _BUNDLED[weight]
        return Path(path) if Path(path).is_file() else None
    except ImportError:
        return None


def text_in_svg(svg: str) -> str:
    """Every character a viewer must draw: the contents of <text> and <tspan>, entities decoded."""
    return "".join(html.unescape(m.group(2)) for m in _TEXT.finditer(svg))


def _subset_woff(path: Path, chars: str) -> bytes:
    from fontTools import subset

    opts = subset.Options()
    opts.flavor = "woff"
    opts.layout_features = ["*"]
    opts.name_IDs = ["*"]
    opts.notdef_outline = True
    opts.drop_tables = [*opts.drop_tables, "FFTM"]  # FontForge's timestamp: nothing a viewer reads
    font = subset.load_font(str(path), opts)
    sub = subset.Subsetter(opts)
    sub.populate(text=chars or " ")
    sub.subset(font)
    buf = io.BytesIO()
    subset.save_font(font, buf, opts)
    return buf.getvalue()


def embed_fonts(svg: bytes) -> bytes:
    """The SVG with the export family's glyphs for its own text as @font-face data; unchanged when it does not use
    that family or the font file cannot be found (the figure still names the family)."""
    text = svg.decode("utf-8")
    name = family()
    if name not in text or "@font-face" in text:
        return svg
    chars = "".join(sorted(set(text_in_svg(text)) - {"\n", "\r", "\t"}))
    weights = ["normal"] + (["bold"] if _BOLD.search(text) else [])
    faces = []
    for w in weights:
        path = font_file(w)
        if path is None:
            continue
        data = base64.b64encode(_subset_woff(path, chars)).decode("ascii")
        faces.append(f"@font-face{{font-family:'{name}';font-weight:{'700' if w == 'bold' else '400'};"
                     f"src:url(data:font/woff;base64,{data}) format('woff');}}")
    if not faces:
        return svg
    start = re.search(r"<svg\b[^>]*>", text)
    if start is None:
        return svg
    block = "<defs><style type=\"text/css\">" + "".join(faces) + "</style></defs>"
    return (text[:start.end()] + block + text[start.end():]).encode("utf-8")
