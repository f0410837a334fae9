"""The decision block of a study file: the questions, the rules that turn answers into a recommendation, the
adaptive rounds and the success criteria (spec.py's `Study` holds them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ada_slm.run.config import ConfigPatch
from ada_slm.run.metrics import METRICS, RUN_METRICS
from ada_slm.schema import Strict  # noqa: F401  (study.spec imports it from here)


class Question(Strict):
    """test `better`: 'does arm `compare` beat arm `against` on the decision metric?' — yes when the seed-level
    test supports the difference in the metric's better direction. test `equivalent`: 'do they give the same
    result?' — yes when two one-sided tests (TOST) put the difference inside ±margin; no otherwise (not shown
    equivalent), never from a mere 'not significant'. A question that compares corpus sizes is not asked when
    both arms see the same number of distinct training examples (max_steps caps them)."""

    compare: str = Field(..., description="The arm asked about (an arm of the study, or base).")
    against: str = Field(..., description="The arm it is compared with.")
    test: Literal["better", "equivalent"] = Field(
        "better", description="better (superiority) or equivalent (TOST within ±margin)."
    )
    margin: float | None = Field(
        None,
        gt=0,
        description="Equivalence margin on the decision metric (test "
        "equivalent; default: the study's equivalence_margins of the metric, else "
        "10 % of the `against` arm's mean).",
    )

    @model_validator(mode="after")
    def _margin_needs_equivalence(self):
        if self.margin is not None and self.test != "equivalent":
            raise ValueError("margin is the equivalence margin: set test: equivalent")
        return self


class Rule(Strict):
    when: dict[str, bool] = Field(default_factory=dict, description="Answers required; {} matches anything.")
    recommend: str = Field(..., description="What to run next, in words.")
    config: ConfigPatch = Field(
        default_factory=dict,
        description="Run-config keys laid over the baseline arm's "
        "config: the next run this rule recommends (checked when the study is read).",
    )


class Decision(Strict):
    metric: str = Field(
        "agl_awareness",
        description="The metric the questions are asked on: a per-item metric "
        "(metrics.METRICS) or a run-level one (heldout_loss, train_loss: lower is better; "
        "tokens_per_s).",
    )
    questions: dict[str, Question] = Field(..., description="Question name -> the two arms compared and the test.")
    rules: list[Rule] = Field(..., min_length=1, description="First matching rule wins.")
    min_effect: float | None = Field(
        None,
        gt=0,
        description="Smallest difference on `metric` worth acting on: "
        "the report says how many seeds per arm detect it with 80 % power.",
    )

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        return check_metric(v)


def check_metric(name: str) -> str:
    if name not in METRICS and name not in RUN_METRICS:
        raise ValueError(f"unknown metric {name!r} (one of: {', '.join((*METRICS, *RUN_METRICS))})")
    return name


class Adaptive(Strict):
    """How `ada-slm study run --until-decided` adds runs (docs/guides/studies.md)."""

    seeds_per_round: int = Field(1, gt=0, description="Runs added to each arm that is still open, per round.")
    max_seeds: int = Field(
        10,
        ge=2,
        description="Runs per arm at most (the last planned look; the alpha "
        "spending is planned over the looks up to it).",
    )
    eliminate: bool = Field(
        False,
        description="Sweep: arms significantly worse than the current leader stop "
        "receiving runs; the sweep ends when one arm is left (or the rest are equivalent "
        "within `margin`).",
    )
    metric: str | None = Field(None, description="Metric of the elimination (default: the decision's).")
    margin: float | None = Field(
        None,
        gt=0,
        description="Equivalence margin on the metric: a question (or "
        "the sweep) also ends when the difference is shown to lie within ±margin "
        "(default: equivalence_margins of the metric, else decision.min_effect, "
        "else no equivalence stop).",
    )

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str | None) -> str | None:
        return None if v is None else check_metric(v)


class Criterion(Strict):
    """A success criterion stated before the runs and judged from the runs' CIs in the report: met, not met or
    undecided. Exactly one of `above`, `below`, `better_than`."""

    text: str = Field(..., description="The criterion in the study's own words.")
    arm: str = Field(..., description="The arm it is about.")
    metric: str = Field(..., description="A per-item or run-level metric.")
    above: float | None = Field(
        None,
        description="Met when the arm's 95 % CI lies above this value, not met when it lies below, else undecided.",
    )
    below: float | None = Field(None, description="Met when the arm's 95 % CI lies below this value.")
    better_than: str | None = Field(
        None,
        description="Met when the arm beats this arm on the metric by the "
        "seed-level rule (lower for losses); not met when the 95 % CI of the "
        "difference lies on the worse side of 0.",
    )

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        return check_metric(v)

    @model_validator(mode="after")
    def _one_test(self):
        if sum(x is not None for x in (self.above, self.below, self.better_than)) != 1:
            raise ValueError("give exactly one of above, below, better_than")
        return self
