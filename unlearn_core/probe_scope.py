"""What each probe can and cannot tell, in one line per page, and whether it uses the ORIGINAL's states or logits.

Why: a probe that copies the original's activations or decodes with its logits "recovers" the answers from any model
that can read them, a retrained model included; a page must say so before its number is read as "still inside".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeScope:
    can: str
    cannot: str
    uses_original: str = ""  # what it takes from the original ("" = self-contained)

    def line(self) -> str:
        src = (f"Uses the original's {self.uses_original}: only the retain-only reference under the same probe is a "
               "control. " if self.uses_original else "Self-contained (nothing from the original). ")
        return f"**Can tell:** {self.can}. **Cannot tell:** {self.cannot}. {src}"


SCOPE: dict[str, ProbeScope] = {
    "attribution": ProbeScope("which prompt tokens drive each checkpoint's answer",
                              "whether a forgotten answer is still stored (it reads the output only)"),
    "keyword_recovery": ProbeScope("whether emphasising the entity's keywords brings answers back",
                                   "deletion from a low number: a guessable attribute also 'recovers'; compare the "
                                   "holdout split"),
    "decodability": ProbeScope("whether the answer's first token is linearly decodable from the checkpoint's own "
                               "hidden states", "anything about later answer tokens, or a non-linear encoding"),
    "concept_vectors": ProbeScope("whether unlearning changed the MLP vectors that write the concept",
                                  "whether the answer is recoverable (shown, not counted as verdict evidence)",
                                  "weights (to locate the concept vectors)"),
    "sae_restoration": ProbeScope("whether steering the original's SAE features back in restores the answers",
                                  "'still stores the answer': a model that can read the features is restored too",
                                  "SAE features (injected)"),
    "patching": ProbeScope("in which layers the knowledge still flows when the original's activations are patched in",
                           "recovery by the checkpoint alone", "activations (patched in)"),
    "quantization": ProbeScope("whether tiny weight updates that hid the answers vanish under 4/8-bit rounding",
                               "suppression that survives rounding"),
    "update_revert": ProbeScope("whether the forget answers sit in weights the unlearning left in place, hidden by an "
                                "edit of a few directions per matrix (undo the update's top singular directions)",
                                "whether someone without the original's weights could undo it; a model that moved "
                                "less than a retrained one is not deleted by that alone: read the gap to the "
                                "reference", "weights (the update is measured from them)"),
    "relearning": ProbeScope("how fast fine-tuning on some forget facts restores the held-out ones, over the whole "
                             "run (peak and area, beside the retain-only reference's curve)",
                             "deletion from a last-step number alone: fine-tuning teaches the attribute "
                             "distribution to any model"),
    "representation": ProbeScope("how far each layer's states moved from the original's, and where the answer is "
                                 "readable by the logit lens", "recovery: similarity is not stored knowledge",
                                 "hidden states (compared by CKA)"),
    "perturbation": ProbeScope("whether small activation noise makes answers resurface",
                               "much on its own: noise moves probabilities at random; read it against the control"),
    "extraction": ProbeScope("whether the difference between the original and the checkpoint points at the forget "
                             "answers (guided decoding)", "that the checkpoint alone still knows them: the retrained "
                             "model 'recovers' too", "next-token logits (decoding is guided by them)"),
}


def scope_line(analysis: str) -> str:
    """The page's one line, or "" for an analysis without one."""
    s = SCOPE.get(analysis)
    return s.line() if s else ""
