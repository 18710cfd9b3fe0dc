"""A page's "download all": every chart in SVG, PDF and PNG, one browser session vs one browser per image.

    python benchmarks/export.py [--figures 6]

figure_bytes (one chart's download button) lets kaleido start Chromium for each image; figures_bytes (the zip of a
whole page) renders every image in one kaleido session. Prints both times and the ratio on the same figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import plotly.graph_objects as go

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unlearn_core.report.export import FORMATS, figure_bytes, figures_bytes  # noqa: E402
from unlearn_core.viz.theme import apply_plotly, checkpoint_colors  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--figures", type=int, default=6)
    args = ap.parse_args()
    names = ["original", "ga", "npo", "rmu", "suppressed_head", "retain_only"]
    colors = checkpoint_colors(names)
    figs = []
    for i in range(args.figures):
        fig = go.Figure([go.Scatter(x=[0.5, 1, 2, 5], y=[(j + 1) * (k + i) / 40 for k in range(4)], name=n,
                                    line=dict(color=colors[n])) for j, n in enumerate(names)])
        figs.append(apply_plotly(fig, f"Benchmark chart {i + 1}", "steering strength alpha", "restoration rate"))
    jobs = [(f, fmt) for f in figs for fmt in FORMATS]

    t = time.perf_counter()
    one_session = figures_bytes(jobs)
    t_session = time.perf_counter() - t
    t = time.perf_counter()
    per_image = [figure_bytes(f, fmt) for f, fmt in jobs]
    t_naive = time.perf_counter() - t
    same_kind = all(a[:4] == b[:4] for a, b in zip(one_session, per_image, strict=True))
    print(f"{len(jobs)} images ({args.figures} charts x {'/'.join(FORMATS)})")
    print(f"one session      {t_session:7.1f} s")
    print(f"browser per image {t_naive:6.1f} s")
    print(f"ratio            {t_naive / t_session:7.1f}x   same file types: {same_kind}")


if __name__ == "__main__":
    main()
