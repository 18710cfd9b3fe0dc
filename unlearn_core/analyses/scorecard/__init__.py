"""Behavioural scorecard (methods.md section 1): the numbers the standard unlearning benchmarks report.

They say whether a checkpoint *looks* forgotten (low p~, accuracy, ROUGE-L and extraction strength on the
forget set, truth ratios like the retain-only model's, membership inference near chance) and what forgetting
cost (retain perplexity and accuracy). On their own they cannot tell suppression from deletion (the other audits
do), but every verdict needs them as its "looks forgotten" half, named by variant so tables stay comparable.

Two definitions (`ScorecardConfig.definition`), and every table row names the one that made it:
- "open-unlearning" (default): open-unlearning's exact spans and formulas, so numbers sit beside published TOFU /
  MUSE tables: EOS appended to every answer and counted in p~ and the truth ratio, membership inference on the
  answer only (prompt as context; Min-K/Min-K++ leave the EOS out, zlib = mean loss / zlib bytes of the answer),
  200 new tokens for ROUGE-L, extraction strength as OU's loop computes it (1/|y| when the last token is wrong),
  1e-10 guards in the truth ratio, PrivLeak with a 0.5 reference AUC when no retain-only model is loaded.
- "own": the project's variant: no EOS, prompt + answer as the MIA text, zlib = summed loss / zlib bytes, 24 new
  tokens, extraction strength by the paper (0 when the last token is wrong).
PrivLeak is MUSE's in both: (AUC_ref - AUC) / (1 - AUC_ref) x 100, AUC = 1 when forget texts look like members.

Cost: per model and split, ONE teacher-forced scoring call covers gold, paraphrased and perturbed answers
together (length-sorted batches), plus one batched greedy generation; membership inference is one more
scoring call over forget + holdout texts. Never one forward pass per item.
"""
from __future__ import annotations

from unlearn_core.analyses.scorecard.compute import compute_scorecard, restrict_scorecard, sample_generate
from unlearn_core.analyses.scorecard.metrics import (
    aggregate_truth_ratio,
    answer_in,
    extraction_strength,
    extraction_strength_ou,
    forget_quality,
    model_utility,
    privleak,
    rouge_l_recall,
    truth_ratio,
    wilson_interval,
)
from unlearn_core.analyses.scorecard.result import (
    DEFINITIONS,
    ITEM_COLUMNS,
    MIA_TEXT_MODES,
    OU,
    OU_EPS,
    OU_PRIVLEAK_REF,
    OWN,
    SPLITS,
    SUMMARY_COLUMNS,
    ItemScore,
    MiaScore,
    RocCurve,
    ScorecardConfig,
    ScorecardResult,
)
from unlearn_core.analyses.spec import AnalysisSpec

__all__ = ["DEFINITIONS", "ITEM_COLUMNS", "MIA_TEXT_MODES", "OU", "OU_EPS", "OU_PRIVLEAK_REF", "OWN", "SPEC",
           "SPLITS", "SUMMARY_COLUMNS", "ItemScore", "MiaScore", "RocCurve", "ScorecardConfig", "ScorecardResult",
           "aggregate_truth_ratio", "answer_in", "compute_scorecard", "extraction_strength",
           "extraction_strength_ou", "forget_quality", "model_utility", "privleak", "rouge_l_recall",
           "sample_generate", "truth_ratio", "wilson_interval"]

def _plots(r) -> dict:
    """The charts exported for papers, with the page's default choices."""
    from unlearn_core.analyses.scorecard.plots import plot_mia_auc, plot_model_metric, plot_roc, plot_split_metric

    summary, roc = r.to_frame(), r.roc_frame()
    out = {f"scorecard_{m}": plot_split_metric(summary, m) for m in ("acc", "p", "rougeL_recall", "truth_ratio")
           if f"forget_{m}" in summary.columns}
    out["scorecard_retain_ppl"] = plot_model_metric(summary, "retain_ppl", "Retain-set perplexity (lower is better)",
                                                    "perplexity", log_y=True)
    out["scorecard_mia_auc"] = plot_mia_auc(summary)
    if not roc.empty:
        out["scorecard_roc"] = plot_roc(roc, sorted(set(roc["metric"]))[0])
    return out


SPEC = AnalysisSpec(
    name="scorecard", title="Behavioural scorecard", default_config=ScorecardConfig, compute=compute_scorecard,
    tables=lambda r: {"scorecard_summary": r.to_frame(), "scorecard_items": r.items_frame(),
                      "scorecard_roc": r.roc_frame()},
    scores=lambda r, name: r.scores(name),
    page_title="Behavioural scorecard",
    icon=":material/scoreboard:",
    plots=_plots,
    cost_rank=9,
    default_evidence=True,
    restrict=restrict_scorecard,
)
