"""Judging a trial: the candidate against production on labelled live requests.

A shadow trial compares the two models on the same requests: every request
production answered and the shadow copy of the candidate predicted, joined on
``(request_id, row_index)``, with a label. The candidate wins when its metric
beats production's by the policy's relative ``margin``.

A canary trial compares two different shares of the traffic, so it also needs
evidence that the difference is not luck: for ``rmse`` a one-sided Welch
t-test on the squared errors, for ``mae`` on the absolute errors (H1: the
candidate's mean loss is lower), and for ``accuracy`` a one-sided
two-proportion z-test (H1: the candidate is right more often). The candidate
wins when the p-value is below ``alpha`` and the margin holds too.

The deployment a trial runs on is the production deployment with the
candidate added as a shadow or a canary; when the trial ends it is put back
as the ``training.trial_started`` event recorded it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from mlcycle.agent._policy import TrainingPolicy
from mlcycle.errors import ValidationFailed
from mlcycle.store import Deployment, Variant

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Verdict", "deployment_dict", "judge", "restored_deployment", "trial_deployment"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the labelled requests say so far.

    ``decided`` is false while fewer than ``min_labelled`` are labelled;
    otherwise ``promote`` says whether the candidate won, and ``why`` says it in words.
    """

    decided: bool
    promote: bool
    labelled: int
    needed: int
    why: str
    candidate: float | None = None
    production: float | None = None
    improvement: float | None = None
    test: str | None = None
    p_value: float | None = None
    production_labelled: int | None = None

    def to_dict(self) -> dict[str, Any]:  # Any: JSON values
        """The verdict as an event payload."""
        return {
            "labelled": self.labelled,
            "needed": self.needed,
            "candidate_value": self.candidate,
            "production_value": self.production,
            "improvement": self.improvement,
            "test": self.test,
            "p_value": self.p_value,
            "production_labelled": self.production_labelled,
            "why": self.why,
        }


def judge(rows: pa.Table, policy: TrainingPolicy, *, candidate: int, production: int) -> Verdict:
    """Judge ``candidate`` against ``production`` on ``rows`` (``FeedbackLog.labelled`` rows)."""
    import pyarrow.compute as pc  # noqa: PLC0415  (heavy; the agent imports this module)

    labelled = rows.filter(pc.is_valid(rows.column("label")))
    version = labelled.column("model_version")
    shadow = labelled.column("shadow")
    mine = labelled.filter(pc.equal(version, candidate))
    theirs = labelled.filter(pc.and_(pc.equal(version, production), pc.invert(shadow)))
    if policy.trial == "shadow":
        return _paired(mine, theirs, policy)
    return _shares(mine, theirs, policy)


def trial_deployment(current: Deployment, policy: TrainingPolicy, ref: str) -> Deployment:
    """``current`` with ``ref`` as the policy's shadow or canary of its one answering model."""
    from mlcycle.serve import compose  # noqa: PLC0415  (on first trial)

    answering = [v for v in current.variants if not v.shadow]
    if len(answering) != 1:
        raise ValidationFailed(
            f"deployment '{current.name}' answers with {len(answering)} variants; a trial needs "
            "one production variant to compare with (deploy it with policy 'single')"
        )
    base = answering[0].model
    return compose(
        current.name,
        model=base,
        shadow=[ref] if policy.trial == "shadow" else (),
        canary={ref: policy.canary_share * 100} if policy.trial == "canary" else None,
        key_columns=current.key_columns,
    )


def deployment_dict(deployment: Deployment) -> dict[str, Any]:  # Any: JSON values
    """``deployment`` as a JSON value, kept in ``training.trial_started`` to put it back."""
    return {
        "policy": deployment.policy,
        "sticky_key": deployment.sticky_key,
        "key_columns": list(deployment.key_columns),
        "variants": [
            {"name": v.name, "model": v.model, "weight": v.weight, "shadow": v.shadow}
            for v in deployment.variants
        ],
    }


def restored_deployment(
    name: str, before: dict[str, Any], *, model: str, winner: int | None
) -> Deployment:  # Any: JSON values
    """The deployment ``before`` recorded, a pinned version of ``model`` replaced by ``winner``."""
    variants = []
    for item in before.get("variants", []):
        variant = Variant(**item)
        pinned = "@" not in variant.model and variant.model.startswith(f"{model}/")
        if winner is not None and pinned and not variant.shadow:
            variant = replace(variant, model=f"{model}/{winner}")
        variants.append(variant)
    return Deployment(
        name=name,
        variants=tuple(variants),
        policy=before.get("policy", "single"),
        sticky_key=before.get("sticky_key"),
        key_columns=tuple(before.get("key_columns", ())),
    )


def _paired(mine: pa.Table, theirs: pa.Table, policy: TrainingPolicy) -> Verdict:
    keys = ["request_id", "row_index"]
    left = mine.select([*keys, "output", "label"]).rename_columns([*keys, "candidate", "label"])
    right = theirs.select([*keys, "output"]).rename_columns([*keys, "production"])
    pairs = left.join(right, keys=keys, join_type="inner", use_threads=False)
    count = pairs.num_rows
    if count < policy.min_labelled:
        return _waiting(count, policy, "labelled requests both models answered")
    truth = _values(pairs.column("label"))
    cand = _metric(policy.metric, _values(pairs.column("candidate")), truth)
    prod = _metric(policy.metric, _values(pairs.column("production")), truth)
    gain = _improvement(cand, prod, lower_is_better=policy.lower_is_better)
    wins = gain >= policy.margin
    why = (
        f"on the same {count} labelled requests, {policy.metric} {_num(cand)} (candidate) "
        f"against {_num(prod)} (production): {_pct(gain)} better, "
        f"{'at least' if wins else 'less than'} the margin of {_pct(policy.margin)}"
    )
    return Verdict(
        decided=True,
        promote=wins,
        labelled=count,
        needed=policy.min_labelled,
        why=why,
        candidate=cand,
        production=prod,
        improvement=gain,
        test="paired",
    )


def _shares(mine: pa.Table, theirs: pa.Table, policy: TrainingPolicy) -> Verdict:
    count, others = mine.num_rows, theirs.num_rows
    if min(count, others) < policy.min_labelled:
        return _waiting(
            min(count, others), policy, "labelled requests on each share (canary and production)"
        )
    truth_c, truth_p = _values(mine.column("label")), _values(theirs.column("label"))
    out_c, out_p = _values(mine.column("output")), _values(theirs.column("output"))
    cand = _metric(policy.metric, out_c, truth_c)
    prod = _metric(policy.metric, out_p, truth_p)
    gain = _improvement(cand, prod, lower_is_better=policy.lower_is_better)
    test, p_value = _test(policy.metric, out_c, truth_c, out_p, truth_p)
    wins = gain >= policy.margin and p_value < policy.alpha
    why = (
        f"{policy.metric} {_num(cand)} on {count} labelled canary requests against "
        f"{_num(prod)} on {others} production requests: {_pct(gain)} better (margin "
        f"{_pct(policy.margin)}), {test} p = {p_value:.3g} "
        f"({'below' if p_value < policy.alpha else 'not below'} alpha {policy.alpha:g})"
    )
    return Verdict(
        decided=True,
        promote=wins,
        labelled=count,
        needed=policy.min_labelled,
        why=why,
        candidate=cand,
        production=prod,
        improvement=gain,
        test=test,
        p_value=p_value,
        production_labelled=others,
    )


def _waiting(count: int, policy: TrainingPolicy, what: str) -> Verdict:
    why = f"waiting for labels: {count} of {policy.min_labelled} {what}"
    return Verdict(
        decided=False, promote=False, labelled=count, needed=policy.min_labelled, why=why
    )


def _values(column: pa.ChunkedArray) -> np.ndarray[Any, Any]:  # Any: numbers or labels

    return np.asarray(column.to_pylist(), dtype=object)


def _metric(metric: str, output: np.ndarray[Any, Any], truth: np.ndarray[Any, Any]) -> float:

    if metric == "accuracy":
        return float(np.mean(_hits(output, truth)))
    errors = output.astype(float) - truth.astype(float)
    if metric == "mae":
        return float(np.mean(np.abs(errors)))
    return float(np.sqrt(np.mean(errors**2)))


def _hits(output: np.ndarray[Any, Any], truth: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:

    return np.array([str(o) == str(t) or o == t for o, t in zip(output, truth, strict=True)])


def _test(
    metric: str,
    out_c: np.ndarray[Any, Any],
    truth_c: np.ndarray[Any, Any],
    out_p: np.ndarray[Any, Any],
    truth_p: np.ndarray[Any, Any],
) -> tuple[str, float]:
    from scipy import stats  # noqa: PLC0415

    if metric == "accuracy":
        hits_c, hits_p = _hits(out_c, truth_c), _hits(out_p, truth_p)
        n_c, n_p = len(hits_c), len(hits_p)
        pooled = (hits_c.sum() + hits_p.sum()) / (n_c + n_p)
        spread = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_p))
        if spread == 0:
            return "two-proportion z-test", 1.0
        z = (hits_c.mean() - hits_p.mean()) / spread
        return "two-proportion z-test", float(stats.norm.sf(z))
    power = 2 if metric == "rmse" else 1
    loss_c = np.abs(out_c.astype(float) - truth_c.astype(float)) ** power
    loss_p = np.abs(out_p.astype(float) - truth_p.astype(float)) ** power
    kind = "squared" if power == 2 else "absolute"
    if np.var(loss_c) == 0 and np.var(loss_p) == 0:
        return f"Welch t-test on {kind} errors", 0.0 if loss_c.mean() < loss_p.mean() else 1.0
    found = stats.ttest_ind(loss_c, loss_p, equal_var=False, alternative="less")
    return f"Welch t-test on {kind} errors", float(found.pvalue)


def _improvement(candidate: float, production: float, *, lower_is_better: bool) -> float:
    """The candidate's relative improvement over production (negative: worse)."""
    if production == 0:
        return 0.0 if candidate == production else (-math.inf if lower_is_better else math.inf)
    change = (production - candidate) / abs(production)
    return change if lower_is_better else -change


def _num(value: float) -> str:
    return f"{value:.4g}"


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"
