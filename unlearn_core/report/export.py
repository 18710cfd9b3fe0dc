"""Figures to SVG/PDF/PNG, tables to CSV/LaTeX, several files to one zip: what goes into a paper or a report.

Plotly figures are rendered by kaleido 1.x, which drives a headless Chrome/Chromium through choreographer;
altair charts are rendered by vl-convert (no browser needed). Both run in-process and return bytes, so the
dashboard can offer downloads without writing temporary files.
"""

from __future__ import annotations

import io
import math
import numbers
import os
import re
import unicodedata
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

__all__ = [
    "FORMATS",
    "ExportError",
    "bundle_zip",
    "csv_cell",
    "csv_safe",
    "figure_bytes",
    "figures_bytes",
    "find_chrome",
    "format_number",
    "latex_escape",
    "safe_filename",
    "table_csv",
    "table_latex",
]

FORMATS = ("svg", "pdf", "png")
DEBIAN_CHROMIUM = "/usr/bin/chromium"
_CHROME_HINT = (
    "Plotly export needs a Chrome/Chromium browser: install Debian's chromium (apt-get install chromium), "
    "or set BROWSER_PATH to a Chrome executable."
)


class ExportError(RuntimeError):
    """A figure or table could not be exported; the message says what to install or change."""


# ---------------------------------------------------------------------------------------------------------------
# figures


def find_chrome() -> str | None:
    """The browser kaleido will use, making Debian's chromium explicit when nothing else is configured.

    choreographer (kaleido's browser driver) takes $BROWSER_PATH first, then searches PATH for chrome/chromium
    names, then typical install paths such as /usr/bin/chromium. Setting BROWSER_PATH when that file exists pins
    the same browser regardless of PATH (Streamlit or CI may run with a reduced PATH).
    """
    configured = os.environ.get("BROWSER_PATH")
    if configured:
        return configured if os.path.isfile(configured) and os.access(configured, os.X_OK) else None
    if os.path.isfile(DEBIAN_CHROMIUM) and os.access(DEBIAN_CHROMIUM, os.X_OK):
        os.environ["BROWSER_PATH"] = DEBIAN_CHROMIUM
        return DEBIAN_CHROMIUM
    try:
        from choreographer.browsers.chromium import Chromium

        return Chromium.find_browser(skip_local=False)
    except Exception:  # noqa: BLE001 - private API of a dependency; no answer means "not found"
        return None


def _check_format(fmt: str) -> str:
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def _is_plotly(fig: Any) -> bool:
    try:
        from plotly.basedatatypes import BaseFigure
    except ImportError:  # pragma: no cover - plotly is a hard dependency
        return False
    return isinstance(fig, BaseFigure)


def _is_altair(fig: Any) -> bool:
    try:
        import altair as alt
    except ImportError:  # pragma: no cover - altair is a hard dependency
        return False
    return isinstance(fig, alt.TopLevelMixin)


def _at_preset(fig: Any, width: int, height: int, preset: str | None) -> tuple[Any, int, int]:
    """A size preset (unlearn_core.viz.presets: "column", "two_columns", "slide") lays a plotly figure out at its
    print size with print font sizes; None keeps the screen size."""
    if not _is_plotly(fig):
        return fig, width, height
    if preset is None or preset == "screen":  # a figure sized for its content (a tall heatmap) keeps its size
        return fig, int(fig.layout.width or width), int(fig.layout.height or height)
    from unlearn_core.viz.presets import get_preset, paper_figure

    p = get_preset(preset)
    out = paper_figure(fig, p)
    return out, p.width_px, int(out.layout.height or p.height_px)  # a row chart may grow taller, never wider


def _export_font(fig: Any) -> Any:
    """A copy of a plotly figure set in the one export family (unlearn_core.viz.fonts): the font Chromium measures
    with is the font the SVG carries."""
    if not _is_plotly(fig):
        return fig
    import plotly.graph_objects as go

    from unlearn_core.viz.fonts import css_family

    out = go.Figure(fig)
    out.update_layout(font_family=css_family())
    return out


def _finish(raw: bytes, fmt: str) -> bytes:
    if fmt != "svg":
        return raw
    from unlearn_core.viz.fonts import embed_fonts

    return embed_fonts(raw)


def figure_bytes(fig: Any, fmt: str, width: int = 900, height: int = 500, scale: float = 2,
                 preset: str | None = None) -> bytes:
    """Render a plotly figure or an altair chart to SVG, PDF or PNG bytes.

    width/height are layout pixels; `scale` multiplies the pixel density of PNGs (2 = sharp on slides and
    high-DPI screens). Altair charts keep an explicit width/height or a concat/facet layout of their own.
    `preset` (a paper/slide size) overrides width/height with the print layout.
    """
    fmt = _check_format(fmt)
    fig, width, height = _at_preset(fig, width, height, preset)
    if preset is not None and fmt != "png":
        scale = 1  # vector output at exactly the print size the fonts were set for
    if _is_plotly(fig):
        return _finish(_plotly_bytes(_export_font(fig), fmt, width, height, scale), fmt)
    if _is_altair(fig):
        return _altair_bytes(fig, fmt, width, height, scale)
    raise TypeError(f"figure_bytes expects a plotly Figure or an altair Chart, got {type(fig).__name__}")


def figures_bytes(jobs: list[tuple[Any, str]], width: int = 900, height: int = 500, scale: float = 2,
                  preset: str | None = None) -> list[bytes]:
    """Render many (figure, format) pairs, in order. Plotly figures share ONE kaleido browser session: a separate
    `figure_bytes` call starts Chromium every time (~1-2 s each), which made a page's "download all" take a minute.
    Altair charts go through vl-convert as in figure_bytes."""
    out: list[bytes | None] = [None] * len(jobs)
    plotly_jobs = []
    for i, (fig, fmt) in enumerate(jobs):
        fmt = _check_format(fmt)
        if _is_plotly(fig):
            fig, w, h = _at_preset(fig, width, height, preset)
            sc = 1 if preset is not None and fmt != "png" else scale
            plotly_jobs.append((i, _export_font(fig).to_dict(), dict(format=fmt, width=w, height=h, scale=sc)))
        else:
            out[i] = figure_bytes(fig, fmt, width, height, scale)
    if plotly_jobs:
        async def render() -> list[bytes]:
            import kaleido

            async with kaleido.Kaleido(n=1) as k:
                return [await k.calc_fig(spec, opts=opts) for _, spec, opts in plotly_jobs]

        for (i, _, opts), raw in zip(plotly_jobs, _kaleido_call(lambda: _in_thread(render), "batch"), strict=True):
            out[i] = _finish(raw, opts["format"])
    return out  # type: ignore[return-value]


def _in_thread(coro_fn):
    """asyncio.run in a fresh thread: the caller may already be inside an event loop (Streamlit, notebooks)."""
    import asyncio
    import threading

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro_fn())
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _zero_margin_pdf() -> None:
    """kaleido 1.x prints a PDF with Chrome's 0.1 in page margins on a page the size of the figure, so the figure is
    drawn 0.1 in down and right and its right and bottom edges (the x axis title) are cut off. Its print call is
    replaced by the same one with no margins (kaleido 1.5.0 looks it up on its module at each call)."""
    try:
        from kaleido._kaleido_tab import _devtools_utils as devtools
    except ImportError:  # another kaleido layout: leave it as it is
        return
    if getattr(devtools.print_pdf, "zero_margin", False):
        return

    async def print_pdf(tab) -> str:
        params = {"printBackground": True, "marginTop": 0, "marginBottom": 0, "marginLeft": 0, "marginRight": 0,
                  "preferCSSPageSize": True, "pageRanges": "1"}
        response = await tab.send_command("Page.printToPDF", params=params)
        devtools._raise_error(response)
        return response.get("result", {}).get("data")

    print_pdf.zero_margin = True
    devtools.print_pdf = print_pdf


def _kaleido_call(fn, fmt: str):
    _zero_margin_pdf()
    if find_chrome() is None:
        configured = os.environ.get("BROWSER_PATH")
        where = f" (BROWSER_PATH={configured} is not an executable file)" if configured else ""
        raise ExportError(_CHROME_HINT + where)
    try:
        return fn()
    except Exception as e:
        from kaleido.errors import ChromeNotFoundError

        if isinstance(e, ChromeNotFoundError) or "chrome" in str(e).lower():
            raise ExportError(f"{_CHROME_HINT} (kaleido said: {e})") from e
        raise ExportError(f"plotly export to {fmt} failed: {e}") from e


def _plotly_bytes(fig: Any, fmt: str, width: int, height: int, scale: float) -> bytes:
    import plotly.io as pio

    return _kaleido_call(lambda: pio.to_image(fig, format=fmt, width=width, height=height, scale=scale), fmt)


def _vl_version() -> str:
    """vl-convert's name of the Vega-Lite version altair writes, e.g. 'v6.4.1' -> 'v6_4'."""
    import altair as alt

    major, minor = alt.SCHEMA_VERSION.lstrip("v").split(".")[:2]
    return f"v{major}_{minor}"


def _altair_bytes(chart: Any, fmt: str, width: int, height: int, scale: float) -> bytes:
    import vl_convert as vlc

    spec = chart.to_dict()  # includes the active altair theme's config
    single_view = not any(k in spec for k in ("hconcat", "vconcat", "concat", "facet", "repeat"))
    if single_view:
        spec.setdefault("width", width)
        spec.setdefault("height", height)
    version = _vl_version()
    try:
        if fmt == "svg":
            return vlc.vegalite_to_svg(spec, vl_version=version).encode("utf-8")
        if fmt == "png":
            return vlc.vegalite_to_png(spec, vl_version=version, scale=scale)
        return vlc.vegalite_to_pdf(spec, vl_version=version)
    except Exception as e:
        raise ExportError(f"altair export to {fmt} failed: {e}") from e


# ---------------------------------------------------------------------------------------------------------------
# tables


def _keeps_index(df: pd.DataFrame) -> bool:
    """A default 0..n-1 index carries no information; any other index (e.g. checkpoint names) is a column."""
    idx = df.index
    return not (isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1 and idx.name is None)


def table_csv(df: pd.DataFrame) -> bytes:
    """UTF-8 CSV with full precision (for re-analysis; the LaTeX table is the rounded, human one), formula-safe.

    CRLF rows (RFC 4180): with '\n' rows Python's writer leaves a cell holding a bare CR unquoted, which a
    spreadsheet reads as a row break."""
    return csv_safe(df).to_csv(index=_keeps_index(df), lineterminator="\r\n").encode("utf-8")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(x: Any) -> Any:
    """A text cell a spreadsheet would run as a formula ('=HYPERLINK(...)', '+cmd|...', '@SUM') gets a leading "'"
    (OWASP's CSV-injection advice); numbers, and text that is just a number such as '-0.5', are left as they are."""
    if not isinstance(x, str) or not x.startswith(_FORMULA_START):
        return x
    try:
        float(x)
    except ValueError:
        return "'" + x
    return x


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with every text cell, column name and index label passed through csv_cell (numeric columns untouched)."""
    out = df.rename(index=csv_cell, columns=csv_cell)
    text_cols = [i for i in range(out.shape[1]) if not pd.api.types.is_numeric_dtype(out.iloc[:, i])]
    if text_cols:
        out = out.copy(deep=False)
        for i in text_cols:  # whole columns replaced: a categorical column gains its quoted labels as plain text
            out.isetitem(i, out.iloc[:, i].map(csv_cell).astype(object))
    return out


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_RE = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIAL))


def latex_escape(text: str) -> str:
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group()], text)


def format_number(x: Any, digits: int = 3) -> str:
    """A number rounded to `digits` significant digits for a table; plain decimals in the usual range.

    0.123456 -> 0.123, 12.3456 -> 12.3, 1234.5 -> 1234 (integer part kept), 1.2e-5 -> $1.20\\times10^{-5}$.
    """
    if x is None:
        return "--"
    if isinstance(x, (bool, numbers.Integral)):  # numpy ints register as Integral; counts stay exact
        return str(x)
    try:
        v = float(x)
    except (TypeError, ValueError):
        return latex_escape(str(x))
    if math.isnan(v):
        return "--"
    if math.isinf(v):
        return r"$\infty$" if v > 0 else r"$-\infty$"
    if v == 0:
        return "0"
    exp = math.floor(math.log10(abs(v)))
    if -3 <= exp < 6:
        return f"{v:.{max(0, digits - 1 - exp)}f}"
    mantissa, e = f"{v:.{digits - 1}e}".split("e")
    return rf"${mantissa}\times10^{{{int(e)}}}$"


def _cell(x: Any) -> str:
    if isinstance(x, str):
        return latex_escape(x)
    if isinstance(x, numbers.Number):
        return format_number(x)
    if x is None or (pd.api.types.is_scalar(x) and pd.isna(x)):
        return "--"
    return latex_escape(str(x))


def table_latex(df: pd.DataFrame, caption: str, label: str) -> bytes:
    """A booktabs LaTeX table (needs \\usepackage{booktabs}) with numbers to 3 significant digits, text escaped."""
    if not label or not re.fullmatch(r"[A-Za-z0-9:_\-.]+", label):
        raise ValueError(f"LaTeX label must be non-empty and use only letters, digits and :_-. ; got {label!r}")
    keep_index = _keeps_index(df)
    df = df.copy(deep=False)  # escape axis names too (Styler.format_index only formats the labels)
    df.index = df.index.set_names([None if n is None else latex_escape(str(n)) for n in df.index.names])
    df.columns = df.columns.set_names([None if n is None else latex_escape(str(n)) for n in df.columns.names])
    styler = df.style.format(_cell)
    styler = styler.format_index(_cell, axis=0).format_index(_cell, axis=1)
    if not keep_index:
        styler = styler.hide(axis="index")
    tex = styler.to_latex(
        caption=latex_escape(caption),
        label=label,
        hrules=True,
        position_float="centering",
        column_format=("l" * df.index.nlevels if keep_index else "")
        + "".join(_column_align(df[c]) for c in df.columns),
    )
    return tex.encode("utf-8")


def _column_align(col: pd.Series) -> str:
    return "r" if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col) else "l"


# ---------------------------------------------------------------------------------------------------------------
# files


def bundle_zip(files: Mapping[str, bytes]) -> bytes:
    """A zip of named files (subfolders allowed: "figures/a.svg"); identical input gives identical bytes.

    Names are checked so that unzipping cannot write outside the target folder.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            path = PurePosixPath(str(name).replace("\\", "/"))
            if not path.parts or path.is_absolute() or ".." in path.parts or Path(str(name)).drive:
                raise ValueError(f"unsafe file name in bundle: {name!r}")
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"bundle file {name!r} must be bytes, got {type(data).__name__}")
            info = zipfile.ZipInfo(str(path), date_time=(1980, 1, 1, 0, 0, 0))  # fixed: reproducible archives
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, bytes(data))
    return buf.getvalue()


_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def safe_filename(title: str, max_len: int = 80) -> str:
    """A portable file stem from a figure title: ASCII letters, digits, '-', '_' and '.', lower case.

    "Forget accuracy: NPO vs. original (λ=0.5)" -> "forget_accuracy_npo_vs._original_0.5".
    """
    ascii_text = unicodedata.normalize("NFKD", str(title)).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_text).strip("._-").lower()
    stem = re.sub(r"_+", "_", stem)[:max_len].rstrip("._-")
    if not stem:
        return "figure"
    if stem.split(".")[0] in _WINDOWS_RESERVED:
        stem = f"_{stem}"
    return stem
