import pytest
from typer.testing import CliRunner

from ada_slm.analysis.audit import audit, load_reported
from ada_slm.app.cli import app
from ada_slm.errors import UserError
from tests.shared import STUDIES

REPORTED = STUDIES / "phase14d-reported.yaml"


@pytest.fixture(scope="module")
def sections():
    return dict(audit(load_reported(REPORTED)))


def test_table_level_findings(sections):
    lines = sections["The table as a whole"]
    assert lines[0].startswith("n = 1:")
    assert "Re-running v9B gave agl_awareness = 0.0857 and 0.0010" in lines[1]
    assert "v9B: certainty_gradient is 0.0020 in one published table and 0.0400 in another." in lines
    assert (
        "v9C is published as micro 1 × accum 16 = 16 but ran as micro 4 × accum 16 = 64 (87 optimizer steps)." in lines
    )
    assert any(
        line.startswith("v9E is published as micro 1 × accum 16 = 16 but ran as micro 4 × accum 16 = 64")
        for line in lines
    )
    assert not any(line.startswith("v9D is published") for line in lines)  # v9D ran as published


def test_92x_claim(sections):
    lines = sections["92× more AGL awareness (v9C over v9B)"]
    assert lines == [
        "Reported: agl_awareness v9B 0.0010 → v9C 0.0927 (Δ +0.0917, ratio 92.7 without a CI), one run each.",
        "Baseline ≈ 0: v9B's 0.0010 is below 0.01 and below the re-run spread 0.0847; a ratio over it is not "
        "meaningful: n/a (baseline ≈ 0).",
        "Confounded: rank 16→32, effective batch 4×4=16, 339 steps → 4×16=64, 87 steps change together; the data "
        "cannot say which one (if any) caused the difference.",
        "Verdict: not supported (n = 1, confounded, baseline ≈ 0).",
    ]


def test_batch1_claim_was_never_tested(sections):
    lines = sections["batch=1 adds 54 % (v9C over v9D)"]
    assert "Both arms ran with micro-batch 4: the micro-batch was never varied, so this claim was not tested." in lines
    assert "Confounded: rank 32→32" not in " ".join(lines)  # r and α are equal: not a factor
    assert lines[-1] == ("Verdict: not supported (n = 1, the claimed factor was not varied, baseline ≈ 0).")


def test_rank48_claim_is_a_clean_pair_but_n1(sections):
    lines = sections["r=48 kills emergence (v9E vs v9C)"]
    assert "The claim attributes the difference to rank 48 vs 32; as run, the arms differ in rank 32→48." in lines
    assert not any(line.startswith("Confounded") for line in lines)
    assert "The difference (0.0840) is within the re-run spread (0.0847)." in lines
    assert lines[-1] == "Verdict: not supported (n = 1)."


def test_loss_claim(sections):
    lines = sections["higher loss = less overfitting = more emergence"]
    assert "They are different quantities (last logged step vs whole-run average) and cannot be compared." in lines
    assert "Like for like (last logged step): v9B 0.785, v9C 2.396, v9D 0.193, v9E 1.922." in lines
    scaling = next(line for line in lines if line.startswith("The logged training loss scales"))
    assert "v9B 0.785 / 4 = 0.196" in scaling and "v9C 3.262 / 16 = 0.204" in scaling
    assert lines[-1].startswith("Verdict: not supported")


def test_cli_and_bad_file(tmp_path):
    result = CliRunner().invoke(app, ["study", "audit"])
    assert result.exit_code == 0 and "92× more AGL awareness" in result.output
    bad = tmp_path / "r.yaml"
    bad.write_text(
        "name: x\narms:\n  a: {lora: {r: 1}, published: {micro: 1, accum: 1}, metrics: {}}\n"
        "claims: [{text: t, type: ratio, metric: m, arm: a, against: zz}]\n"
    )
    with pytest.raises(UserError, match="unknown arm 'zz'"):
        load_reported(bad)


SYNTHETIC = """
name: synthetic
arms:
  small:
    lora: {r: 16, alpha: 32}
    published: {micro: 4, accum: 4, steps: 300}
    loss: {value: 2.10, kind: held_out}
    metrics: {agl_awareness: 0.100}
    reruns: {agl_awareness: [0.100, 0.104, 0.098], heldout_loss: [2.10, 2.097, 2.103]}
  large:
    lora: {r: 32, alpha: 64}
    published: {micro: 4, accum: 4, steps: 300}
    loss: {value: 1.80, kind: held_out}
    metrics: {agl_awareness: 0.200}
    reruns: {agl_awareness: [0.200, 0.195, 0.207], heldout_loss: [1.80, 1.79, 1.805]}
claims:
  - {text: "2x awareness at r32", type: ratio, metric: agl_awareness, arm: large, against: small}
  - {text: "rank raises awareness", type: factor, factor: rank 32 vs 16, metric: agl_awareness,
     arm: large, against: small}
  - {text: "rank lowers awareness", type: factor, factor: rank 32 vs 16, metric: agl_awareness,
     arm: large, against: small, direction: lower}
  - {text: "higher held-out loss, less awareness", type: loss, metric: agl_awareness, direction: lower}
"""


def test_claims_that_hold_are_supported(tmp_path):
    path = tmp_path / "synthetic.yaml"
    path.write_text(SYNTHETIC)
    verdicts = {heading: lines[-1] for heading, lines in audit(load_reported(path))}
    assert verdicts["2x awareness at r32"].startswith("Verdict: supported (higher by the seed-level test, p 0.0")
    assert verdicts["rank raises awareness"].startswith("Verdict: supported")
    assert verdicts["2x awareness at r32"].endswith("; this claim tested alone, not corrected over the other claims).")
    assert verdicts["rank lowers awareness"] == "Verdict: not supported (the difference goes the other way)."
    assert verdicts["higher held-out loss, less awareness"].startswith("Verdict: supported (seed-level tests")
    general = dict(audit(load_reported(path)))["The table as a whole"]
    assert general[0].startswith("Runs per arm: small 3, large 3")


def test_the_seeds_criteria_are_undecided_on_single_runs(sections):
    lines = sections["Success criteria (stated before the runs)"]
    assert lines[0] == (
        "AGL awareness > 0.15: undecided (n = 1: no CI; as reported v9C 0.0927, not above 0.15 on one run)."
    )
    assert all(": undecided (n = 1" in line for line in lines) and len(lines) == 4


def test_criteria_with_reruns_are_judged_from_cis(tmp_path):
    path = tmp_path / "synthetic.yaml"
    path.write_text(
        SYNTHETIC
        + """criteria:
  - {text: "large above 0.15", arm: large, metric: agl_awareness, above: 0.15}
  - {text: "large above 0.3", arm: large, metric: agl_awareness, above: 0.3}
  - {text: "small above 0.1", arm: small, metric: agl_awareness, above: 0.1}
  - {text: "large beats small", arm: large, metric: agl_awareness, better_than: small}
  - {text: "small beats large", arm: small, metric: agl_awareness, better_than: large}
"""
    )
    lines = dict(audit(load_reported(path)))["Success criteria (stated before the runs)"]
    assert [line.split(" (")[0] for line in lines] == [
        "large above 0.15: met",
        "large above 0.3: not met",
        "small above 0.1: undecided",
        "large beats small: met",
        "small beats large: not met",
    ]
    assert lines[0] == "large above 0.15: met (large 0.2007 [0.1857, 0.2156] over 3 runs)."
    path.write_text(SYNTHETIC + "criteria:\n  - {text: t, arm: large, metric: agl_awareness, above: 0.1, below: 1}\n")
    with pytest.raises(UserError, match="criteria.0: give exactly one of above, below, better_than"):
        load_reported(path)
