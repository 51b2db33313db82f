"""Is a fine-tune better than the weights it started from? Decided on the held-out scores.

A fine-tune can make things worse (too few photos, unlucky masks, too many steps). Such a result must
not be saved and offered as if it were an improvement: :func:`judge` compares the headline score
before and after, and also says when the held-out set is too small for any score to mean much
(one or two photos give an F1 of 1.000 or 0.000 by luck).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The headline score of each task and whether higher is better (first one present wins).
HEADLINE = (("f1", True), ("domain_gap", False), ("psnr_quality", True), ("psnr_scratch", True))
COUNT_KEYS = ("photos", "held_out")  # how many held-out photos the scores were computed on
FEW_HELD_OUT = 5  # fewer held-out photos than this: the scores are a hint, not a verdict
TOLERANCE = 1e-6  # equal scores are not "worse"


@dataclass
class Verdict:
    """Before/after of the headline score, whether the fine-tune made it worse, and caveats."""

    key: str = ""
    before: float | None = None
    after: float | None = None
    worse: bool = False
    warnings: list[str] = field(default_factory=list)

    def change(self) -> str:
        """“held-out f1: 1.000 → 0.458”, or "" without both scores."""
        if self.before is None or self.after is None:
            return ""
        return f"held-out {self.key}: {self.before:.3f} → {self.after:.3f}"


def judge(before: dict[str, float], after: dict[str, float], held_out: int | None = None) -> Verdict:
    """Compare held-out scores of the base (``before``) and the fine-tuned weights (``after``).
    ``held_out``: photos held out, when the scores do not say it themselves."""
    verdict = Verdict()
    for key, higher_better in HEADLINE:
        if key in before and key in after:
            verdict.key, verdict.before, verdict.after = key, float(before[key]), float(after[key])
            delta = verdict.after - verdict.before
            verdict.worse = (delta < -TOLERANCE) if higher_better else (delta > TOLERANCE)
            break
    count = next((int(after[k]) for k in COUNT_KEYS if k in after), held_out)
    if verdict.before is None:
        verdict.warnings.append("there are no before/after scores (nothing was held out), so nobody can tell "
                                "whether the fine-tune helped")
    elif count is not None and count < FEW_HELD_OUT:
        verdict.warnings.append(f"the scores come from only {count} held-out photo{'s' if count != 1 else ''}: too "
                                f"few to judge (a perfect {verdict.before:.3f} or a poor one can be luck); "
                                f"{FEW_HELD_OUT} or more held out need about {FEW_HELD_OUT * 5} labelled photos")
    return verdict
