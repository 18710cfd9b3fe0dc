"""One font for every exported figure, carried inside the SVG.

Chromium lays a figure's text out with a font it finds on this machine; an SVG only names that font. A reader,
an editor or a journal's pipeline without it substitutes another one with other widths, and labels overlap or leave
the canvas the preset tests measured. So exports name one family, DejaVu Sans (on every Debian; matplotlib ships a
copy), Chromium measures with it, and the SVG carries the glyphs it uses as an @font-face (subset, WOFF). PDFs
embed their fonts already (Chromium's printer subsets them).
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

FAMILY = "DejaVu Sans"
CSS_FAMILY = f"{FAMILY}, sans-serif"
_FILES = {"normal": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf"}
_TEXT = re.compile(r"<(text|tspan)\b[^>]*>([^<]*)", re.S)
_BOLD = re.compile(r"font-weight:\s*(bold|[6-9]00)")


@functools.cache
def font_file(weight: str = "normal") -> Path | None:
    """The file Chromium uses for FAMILY (fontconfig's answer), else matplotlib's bundled copy (the same glyphs)."""
    if shutil.which("fc-match"):
        pattern = FAMILY + (":bold" if weight == "bold" else "")
        try:
            out = subprocess.run(["fc-match", "-f", "%{family}\t%{file}", pattern], capture_output=True,
                                 text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        family, _, path = out.partition("\t")
        if FAMILY in family and Path(path).is_file():
            return Path(path)
    try:
        import matplotlib

        path = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / _FILES[weight]
        return path if path.is_file() else None
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
    """The SVG with FAMILY's glyphs for its own text as @font-face data; unchanged when it does not use FAMILY or
    the font file cannot be found (the figure still names the family)."""
    text = svg.decode("utf-8")
    if FAMILY not in text or "@font-face" in text:
        return svg
    chars = "".join(sorted(set(text_in_svg(text)) - {"\n", "\r", "\t"}))
    weights = ["normal"] + (["bold"] if _BOLD.search(text) else [])
    faces = []
    for w in weights:
        path = font_file(w)
        if path is None:
            continue
        data = base64.b64encode(_subset_woff(path, chars)).decode("ascii")
        faces.append(f"@font-face{{font-family:'{FAMILY}';font-weight:{'700' if w == 'bold' else '400'};"
                     f"src:url(data:font/woff;base64,{data}) format('woff');}}")
    if not faces:
        return svg
    start = re.search(r"<svg\b[^>]*>", text)
    if start is None:
        return svg
    block = "<defs><style type=\"text/css\">" + "".join(faces) + "</style></defs>"
    return (text[:start.end()] + block + text[start.end():]).encode("utf-8")
