"""The headline figure with many checkpoints (nine: a lab's full set), measured in Chromium from the SVG at the
dashboard's size and at every print preset: no two text elements overlap (checkpoint labels, verdicts, numbers,
legend, title) and none leaves the canvas. As columns the chart overlapped from about seven checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from unlearn_core.evidence.verdict import CheckpointVerdict, VerdictConfig, VerdictResult
from unlearn_core.viz.presets import PRESETS

pytestmark = [pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"
NAMES = ["original", "retain_only", "ga", "graddiff", "npo", "rmu", "suppressed_head", "suppressed_lowrank",
         "retrained"]
VERDICTS = ["not forgotten", "deleted", "partially suppressed", "suppressed", "inconclusive", "suppressed",
            "suppressed", "inconclusive", "deleted"]


def _verdict(n: int) -> VerdictResult:
    rows = []
    for i, (m, v) in enumerate(zip(NAMES[:n], VERDICTS[:n], strict=True)):
        r = [0.0, 0.02, 0.495, 0.62, 0.2, 0.7, 0.95, math.nan, 0.05][i]
        rows.append(CheckpointVerdict(model=m, verdict=v, forget_acc=0.1, original_forget_acc=0.9,
                                      looks_forgotten_score=0.0 if i == 0 else 0.89, retention=r,
                                      retention_lo=r - 0.15, retention_hi=min(1.0, r + 0.15),
                                      retention_from="decodability", control="retain_only", evidence=(), counted=(),
                                      reason=""))
    return VerdictResult(verdicts=tuple(rows), rule="", config=VerdictConfig(), reference="retain_only")


def _overlaps(texts: list[dict]) -> list[str]:
    out = []
    for i, a in enumerate(texts):
        for b in texts[i + 1:]:
            dx = min(a["x1"], b["x1"]) - max(a["x0"], b["x0"])
            dy = min(a["y1"], b["y1"]) - max(a["y0"], b["y0"])
            if dx > 1 and dy > 1:
                out.append(f"{a['text']!r} overlaps {b['text']!r}")
    return out


@pytest.mark.parametrize("n", [4, 9])
def test_headline_text_never_overlaps_at_any_size(n):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM}")
    from tests.core.test_figure_presets import _measure
    from unlearn_core.evidence.plots import plot_verdict_headline
    from unlearn_core.report.export import figure_bytes

    fig = plot_verdict_headline(_verdict(n))
    assert fig.layout.yaxis.autorange == "reversed" and list(fig.data[0].y)[0].startswith("original")
    # every row says its checkpoint, verdict and the interval the rule reads, on its true side of the line
    ticks = list(fig.data[0].y)
    row = {t.split("<br>")[0]: t for t in ticks}
    assert row["ga"].startswith("ga<br><b>partially suppressed</b><br>+0.") and row["ga"].count("[") == 1
    assert n < 9 or row["suppressed_lowrank"].endswith("excess n/a")  # no counted evidence: said, not a zero bar
    svgs = [figure_bytes(fig, "svg", width=900, height=int(fig.layout.height))]
    svgs += [figure_bytes(fig, "svg", preset=p) for p in PRESETS]
    problems = []
    for name, m in zip(["screen", *PRESETS], _measure(svgs), strict=True):
        texts = m["texts"]
        assert all(any(t["text"].startswith(m) for t in texts) for m in NAMES[:n]), name  # every row labelled
        for t in texts:
            if t["x0"] < -0.5 or t["y0"] < -0.5 or t["x1"] > m["W"] + 0.5 or t["y1"] > m["H"] + 0.5:
                problems.append(f"{name}: {t['text']!r} outside the canvas")
        problems += [f"{name}: {o}" for o in _overlaps(texts)]
        if name != "screen":
            assert abs(m["W"] - PRESETS[name].width_px) <= 1, (name, m["W"])  # a column stays a column
            assert m["H"] >= PRESETS[name].height_px - 1, (name, m["H"])
    assert not problems, "\n".join(problems[:20])
