"""`ada-slm compare` on files the real tools wrote: lm_eval --log_samples, inspect_ai logs, a TRL SFTTrainer's
trainer_state.json, ada-slm run folders, and plain tables. A null pair of arms is not called different; a pair
with a planted difference is."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ada_slm.analysis.compare.analysis import CompareSpec, compare, match, to_json
from ada_slm.analysis.compare.readers import ImportedRun, read_inspect, read_lm_eval, read_table, read_trainer_state
from ada_slm.errors import UserError
from tests.shared import DATA


def run_compare(*args) -> subprocess.CompletedProcess:
    """`ada-slm compare ARGS` in this process (the CLI's start-up costs seconds on a loaded machine)."""
    from typer.testing import CliRunner

    from ada_slm.app.cli import app

    result = CliRunner().invoke(app, ["compare", *map(str, args)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def compared(p: subprocess.CompletedProcess) -> dict:
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


def one_line_error(p: subprocess.CompletedProcess, text: str):
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and text in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


# ------------------------------------------------------------------------------------------ tables
def crossed_rows(shifts: dict[str, float], n_runs: int = 3, n_items: int = 40, seed: int = 0) -> list[dict]:
    """Rows of the crossed random-effects model a study assumes: item effect shared by every run, a run effect
    shared by a run's items, an arm × item interaction and noise (SDs 1, 0.15, 0.1, 0.5)."""
    rng = np.random.default_rng(seed)
    item = rng.normal(0, 1, n_items)
    rows = []
    for arm, shift in shifts.items():
        inter = rng.normal(0, 0.1, n_items)
        for k in range(n_runs):
            u = rng.normal(0, 0.15)
            for i in range(n_items):
                score = shift + item[i] + inter[i] + u + rng.normal(0, 0.5)
                rows.append(
                    {
                        "arm": arm,
                        "run": f"{arm}-{k}",
                        "seed": k,
                        "item": f"q{i}",
                        "metric": "score",
                        "score": round(float(score), 6),
                    }
                )
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_table_null_pair_is_not_different_planted_pair_is(tmp_path):
    rows = crossed_rows({"a": 0.0, "same": 0.0, "better": 0.6})
    rows = [r for r in rows if not (r["run"] == "same-1" and r["item"] == "q7")]  # one item one run lacks
    table = write_csv(tmp_path / "runs.csv", rows)
    out = compared(run_compare(table, "--baseline", "a", "--json", "--out", tmp_path / "report"))
    assert out["baseline"] == "a" and out["primary"] == "score"
    assert out["items"]["score"] == {"n_items": 40, "n_shared": 39, "dropped": {"same-1": ["q7"]}}
    assert out["comparisons"]["same"]["metrics"]["score"]["supported"] is False
    better = out["comparisons"]["better"]["metrics"]["score"]
    assert better["supported"] is True and better["delta"]["low"] > 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "39 of 40 items scored in every run" in md and "same-1 lacks 1 (q7)" in md
    assert "| better |" in md and "real" in md and "not distinguishable" in md
    assert (tmp_path / "report" / "report.html").is_file()
    saved = json.loads((tmp_path / "report" / "comparisons.json").read_text())
    assert saved["better"]["score"]["supported"] is True


def test_table_formats_read_alike(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = crossed_rows({"a": 0.0, "b": 0.3}, n_items=12, seed=1)
    write_csv(tmp_path / "t.csv", rows)
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    results = [
        to_json(compare(CompareSpec(arms={arm: [str(tmp_path / f"t.{ext}")] for arm in ("a", "b")})))
        for ext in ("csv", "jsonl", "parquet")
    ]
    assert results[0]["comparisons"] == results[1]["comparisons"] == results[2]["comparisons"]
    assert [r.name for r in read_table(tmp_path / "t.csv", "b")] == ["b-0", "b-1", "b-2"]


def test_equivalence_margin_and_runs_needed(tmp_path):
    table = write_csv(tmp_path / "t.csv", crossed_rows({"a": 0.0, "b": 0.0}, n_runs=3, n_items=60, seed=2))
    out = compared(run_compare(table, "--equivalence-margin", "0.5", "--min-effect", "0.3", "--json"))
    eq = out["comparisons"]["b"]["equivalence"]["score"]
    assert eq["margin"] == 0.5 and eq["equivalent"] is True and -0.5 < eq["low"] < eq["high"] < 0.5
    assert out["power"]["n_seeds"] == 3 and out["power"]["seeds_for_min_effect"] >= 2
    assert out["arms"]["a"]["components"]["score"]["seed_sd"] >= 0


def test_too_few_shared_items_refused(tmp_path):
    rows = crossed_rows({"a": 0.0, "b": 0.0}, n_items=20)
    rows = [r for r in rows if not (r["run"] == "b-2" and int(r["item"][1:]) >= 10)]
    p = run_compare(write_csv(tmp_path / "t.csv", rows))
    one_line_error(p, "metric score: only 10 of 20 items are scored in every run (b-2 has 10)")


def test_table_mistakes_are_one_line(tmp_path):
    (tmp_path / "nocol.csv").write_text("run,item,score\nr,q1,1\n")
    one_line_error(
        run_compare("--arm", f"a={tmp_path / 'nocol.csv'}", "--arm", f"b={tmp_path / 'nocol.csv'}"),
        "nocol.csv:1: no column 'metric'",
    )
    (tmp_path / "nan.csv").write_text("arm,run,item,metric,score\na,r1,q1,acc,1\nb,r2,q1,acc,high\n")
    one_line_error(run_compare(tmp_path / "nan.csv"), "nan.csv:3: score 'high' is not a number")
    (tmp_path / "twice.csv").write_text("arm,run,item,metric,score\na,r1,q1,acc,1\na,r1,q1,acc,0\n")
    one_line_error(run_compare(tmp_path / "twice.csv"), "twice.csv:3: run r1, item q1, metric acc appears twice")
    one_line_error(run_compare("--arm", "a"), "--arm a: expected NAME=PATH")
    one_line_error(
        run_compare("--arm", f"a={tmp_path / 'none'}", "--arm", f"b={tmp_path / 'none'}"),
        "none: no such file or folder",
    )


def test_yaml_spec_with_relative_paths(tmp_path):
    rows = crossed_rows({"a": 0.0, "b": 1.0}, n_items=20, seed=3)
    write_csv(tmp_path / "t.csv", rows)
    (tmp_path / "spec.yaml").write_text("name: demo\narms:\n  a: [t.csv]\n  b: [t.csv]\nbaseline: b\nmetric: score\n")
    out = compared(run_compare(tmp_path / "spec.yaml", "--json"))
    assert out["baseline"] == "b" and out["comparisons"]["a"]["metrics"]["score"]["supported"] is True
    (tmp_path / "bad.yaml").write_text("arms:\n  a: [t.csv]\n")
    one_line_error(run_compare(tmp_path / "bad.yaml"), "arms: compare needs at least two arms")
    assert "Value error" not in run_compare(tmp_path / "bad.yaml").stderr
    one_line_error(run_compare(tmp_path / "spec.yaml", "--metric", "acc"), "--metric acc: the runs have score")


def _run(name: str, source="table", task=None, scores=None, hashes=None) -> ImportedRun:
    return ImportedRun(
        source=source,
        path=name,
        name=name,
        task=task or {},
        item_hashes=hashes or {},
        scores=scores or {"acc": {"1": 1.0, "2": 0.0}},
    )


def test_runs_that_cannot_be_compared_are_refused():
    with pytest.raises(UserError, match="runs from different tools"):
        match({"a": [_run("x", "lm-eval")], "b": [_run("y", "inspect")]})
    with pytest.raises(UserError, match=r"y and x ran different task configurations \(configs.t.num_fewshot: 5 vs 0\)"):
        match(
            {
                "a": [_run("x", task={"configs": {"t": {"num_fewshot": 0}}})],
                "b": [_run("y", task={"configs": {"t": {"num_fewshot": 5}}})],
            }
        )
    temperature = [{"configs": {"t": {"generation_kwargs": {"temperature": v, "until": ["\n"]}}}} for v in (0.0, 1.0)]
    with pytest.raises(UserError, match=r"configs.t.generation_kwargs.temperature: 1.0 vs 0.0\): .*--allow-differing"):
        match({"a": [_run("x", task=temperature[0])], "b": [_run("y", task=temperature[1])]})
    # the factor compared, named: accepted; anything else that differs is still refused
    assert match(
        {"a": [_run("x", task=temperature[0])], "b": [_run("y", task=temperature[1])]}, allow_differing=["temperature"]
    ).metrics
    with pytest.raises(UserError, match="ran different task configurations"):
        match(
            {
                "a": [_run("x", task=temperature[0])],
                "b": [_run("y", task={"configs": {"t": {"generation_kwargs": {"temperature": 1.0, "until": []}}}})],
            },
            allow_differing=["temperature"],
        )
    with pytest.raises(UserError, match=r"y and x ran different tasks \(\['gsm8k'\] vs \['arc_easy'\]\)"):
        match(
            {
                "a": [_run("x", task={"tasks": ["arc_easy"], "configs": {"arc_easy": {"f": "def f(x): ..."}}})],
                "b": [_run("y", task={"tasks": ["gsm8k"], "configs": {"gsm8k": {"f": "def g(x): ..."}}})],
            }
        )
    with pytest.raises(UserError, match="item 2 is not the same item in y and x"):
        match({"a": [_run("x", hashes={"1": "h1", "2": "h2"})], "b": [_run("y", hashes={"1": "h1", "2": "zz"})]})
    kept = match(
        {"a": [_run("x", scores={"acc": {"1": 1.0}, "f1": {"1": 0.5}})], "b": [_run("y", scores={"acc": {"1": 0.0}})]}
    )
    assert list(kept.metrics) == ["acc"] and kept.left_out == {"f1": ["y"]}  # said in the report, not dropped silently


# ------------------------------------------------------------------------------------------ lm-eval
LM_EVAL_RUNS = [
    ("smollm2-135m", 1),
    ("smollm2-135m", 2),
    ("tiny-lfm2", 1),
    ("tiny-lfm2", 2),
    ("tiny-lfm2", 3),
    ("tiny-lfm2", 4),
]


# `python -m lm_eval ARGS` once per argument list, in one process: each is the CLI's own entry point (argument
# parsing, evaluation, the files --log_samples writes) as `python -m lm_eval` runs it. Most of a call is lm_eval
# indexing its ~14,000 built-in task YAMLs (the CLI always does) and importing torch and transformers; one process
# per CPU core (two on CI) runs three of the six calls, paying the imports once.
LM_EVAL_CLI_EACH = """
import json, sys
from lm_eval.__main__ import cli_evaluate
for argv in json.loads(sys.argv[1]):
    sys.argv = ["lm_eval", *argv]
    cli_evaluate()
"""


@pytest.fixture(scope="module")
def lm_eval_runs(tmp_path_factory):
    """The real lm_eval CLI with --log_samples on the `capitals` multiple-choice task (2-shot, few-shot examples
    drawn by --seed): SmolLM2-135M-Instruct (knows capitals) and the random tiny LFM2 (guesses), one output
    folder per (model, seed)."""
    from ada_slm.run import models

    root = tmp_path_factory.mktemp("lm_eval")
    out = {(name, seed): root / f"{name}-s{seed}" for name, seed in LM_EVAL_RUNS}
    argvs = [
        [
            "--model",
            "hf",
            "--model_args",
            f"pretrained={models.resolve(name)},dtype=float32",
            "--device",
            "cpu",
            "--include_path",
            str(DATA / "lm_eval_capitals"),
            "--tasks",
            "capitals",
            "--batch_size",
            "16",
            "--seed",
            str(seed),
            "--log_samples",
            "--output_path",
            str(folder),
        ]
        for (name, seed), folder in out.items()
    ]
    procs = []
    for k in range(2):  # each process gets one SmolLM2 run and two tiny LFM2 runs
        with open(root / f"lm_eval-{k}.log", "w") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", LM_EVAL_CLI_EACH, json.dumps(argvs[k::2])],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
    for k, code in enumerate([proc.wait() for proc in procs]):
        assert code == 0, (root / f"lm_eval-{k}.log").read_text()[-3000:]
    for folder in out.values():  # each call wrote its own results and samples
        assert len(list(folder.rglob("results_*.json"))) == 1 and len(list(folder.rglob("samples_*.jsonl"))) == 1
    return out


@pytest.mark.slow
def test_lm_eval_samples_are_read_per_item(lm_eval_runs):
    folder = lm_eval_runs[("smollm2-135m", 1)]
    run = read_lm_eval(folder)
    assert run.source == "lm-eval" and list(run.scores) == ["acc"]
    assert sorted(run.scores["acc"]) == sorted(f"capitals/{i}" for i in range(24))
    assert run.model["model"] == "hf" and "smollm2-135m" in run.model["model_args"]["pretrained"]
    assert run.model["seed"] == 1 and run.task["tasks"] == ["capitals"] and run.task["n-shot"] == {"capitals": 2}
    results = json.loads(next(folder.rglob("results_*.json")).read_text())
    assert np.mean(list(run.scores["acc"].values())) == pytest.approx(results["results"]["capitals"]["acc,none"])
    # the model's args lm-eval copies into the task's metadata do not make two models' tasks differ
    assert run.task == read_lm_eval(lm_eval_runs[("tiny-lfm2", 1)]).task


@pytest.mark.slow
def test_lm_eval_null_pair_and_planted_pair(lm_eval_runs, tmp_path):
    r = {k: str(v) for k, v in lm_eval_runs.items()}
    out = compared(
        run_compare(
            "--arm",
            f"tiny={r['tiny-lfm2', 1]},{r['tiny-lfm2', 2]}",
            "--arm",
            f"tiny_again={r['tiny-lfm2', 3]},{r['tiny-lfm2', 4]}",
            "--arm",
            f"smol={r['smollm2-135m', 1]},{r['smollm2-135m', 2]}",
            "--baseline",
            "tiny",
            "--metric",
            "acc",
            "--json",
            "--out",
            tmp_path / "report",
        )
    )
    assert out["items"]["acc"]["n_shared"] == 24 and out["items"]["acc"]["dropped"] == {}
    assert out["comparisons"]["tiny_again"]["metrics"]["acc"]["supported"] is False  # same model, other seeds
    smol = out["comparisons"]["smol"]["metrics"]["acc"]
    assert smol["supported"] is True and smol["delta"]["low"] > 0  # a model that knows capitals
    md = (tmp_path / "report" / "report.md").read_text()
    assert (
        "Runs made with lm-evaluation-harness" in md and "acc: 24 of 24 items scored in every run (none dropped)" in md
    )


@pytest.mark.slow
def test_lm_eval_other_config_or_no_samples_refused(lm_eval_runs, tmp_path):
    import shutil

    src = lm_eval_runs[("tiny-lfm2", 1)]
    edited = tmp_path / "zero-shot"
    shutil.copytree(src, edited)
    results_file = next(edited.rglob("results_*.json"))
    results = json.loads(results_file.read_text())
    results["configs"]["capitals"]["num_fewshot"] = 0
    results_file.write_text(json.dumps(results))
    p = run_compare("--arm", f"a={src}", "--arm", f"b={edited}")
    one_line_error(p, "ran different task configurations (configs.capitals.num_fewshot: 0 vs 2)")
    for f in edited.rglob("samples_*.jsonl"):
        f.unlink()
    one_line_error(run_compare("--arm", f"a={src}", "--arm", f"b={edited}"), "run lm_eval with --log_samples")


# ------------------------------------------------------------------------------------------ Inspect
INSPECT_ARMS = {"good": (0.8, [0, 1, 2]), "good_again": (0.8, [3, 4, 5]), "poor": (0.35, [6, 7, 8])}
N_QUESTIONS = 30


def _inspect_task():
    from inspect_ai import Task
    from inspect_ai.dataset import Sample
    from inspect_ai.scorer import CORRECT, INCORRECT, PARTIAL, Score, Target, accuracy, match, scorer
    from inspect_ai.solver import generate

    @scorer(metrics=[accuracy()])
    def close():
        """C for the right number, P for one off, I otherwise: Inspect's three letter grades."""

        async def score(state, target: Target):
            try:
                off = abs(int(state.output.completion.strip()) - int(target.text))
            except ValueError:
                off = None
            return Score(value=CORRECT if off == 0 else PARTIAL if off == 1 else INCORRECT)

        return score

    samples = [Sample(input=f"What is {i} + {i}?", target=str(2 * i), id=f"q{i}") for i in range(N_QUESTIONS)]
    return Task(dataset=samples, solver=generate(), scorer=[match(), close()], name="doubling")


def _mock_model(p_right: float, seed: int):
    """Inspect's mockllm (no network): right with probability p_right per question, else one off or far off;
    the draw depends on (seed, question), not on the order Inspect runs the samples in."""
    import random

    from inspect_ai.model import ModelOutput, ModelUsage, get_model

    def answer(messages, tools, tool_choice, config):
        i = int(messages[-1].text.split()[2])
        draw = random.Random(seed * 1000 + i).random()
        text = str(2 * i if draw < p_right else 2 * i + 1 if draw < (1 + p_right) / 2 else 2 * i + 7)
        usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)  # else it counts tokens with tiktoken
        return ModelOutput.from_content("mockllm/model", text).model_copy(update={"usage": usage})

    return get_model("mockllm/model", custom_outputs=answer, memoize=False)


@pytest.fixture(scope="module")
def inspect_logs(tmp_path_factory):
    """Real Inspect logs (.eval) of a 30-question task scored by match() and a C/P/I scorer, 3 runs per arm."""
    pytest.importorskip("inspect_ai")
    from inspect_ai import eval as inspect_eval

    root = tmp_path_factory.mktemp("inspect")
    out = {}
    for arm, (p_right, seeds) in INSPECT_ARMS.items():
        logs = inspect_eval(
            _inspect_task(), model=[_mock_model(p_right, s) for s in seeds], log_dir=str(root / arm), display="none"
        )
        assert all(log.status == "success" for log in logs)
        out[arm] = [Path(log.location) for log in logs]
    return out


@pytest.mark.slow
def test_inspect_log_scores_map_like_inspect(inspect_logs):
    from inspect_ai.log import read_eval_log

    for path in inspect_logs["poor"]:
        run = read_inspect(path)
        assert run.source == "inspect" and set(run.scores) == {"match", "close"}
        assert sorted(run.scores["close"]) == sorted(f"q{i}" for i in range(N_QUESTIONS))
        assert set(run.scores["close"].values()) <= {0.0, 0.5, 1.0}
        assert run.task["task"] == "doubling" and run.model["model"] == "mockllm/model"
        log = read_eval_log(str(path))
        for s in log.results.scores:  # C 1, P 0.5, I 0: the reader's mean is Inspect's own accuracy
            assert np.mean(list(run.scores[s.name].values())) == pytest.approx(s.metrics["accuracy"].value)
    assert 0.5 in {v for path in inspect_logs["poor"] for v in read_inspect(path).scores["close"].values()}


@pytest.mark.slow
def test_inspect_null_pair_and_planted_pair(inspect_logs, tmp_path):
    arms = [f"--arm={arm}=" + ",".join(map(str, paths)) for arm, paths in inspect_logs.items()]
    out = compared(run_compare(*arms, "--metric", "close", "--json", "--out", tmp_path / "report"))
    assert out["baseline"] == "good" and out["primary"] == "close"
    assert out["items"]["close"]["n_shared"] == N_QUESTIONS
    assert out["comparisons"]["good_again"]["metrics"]["close"]["supported"] is False
    poor = out["comparisons"]["poor"]["metrics"]["close"]
    assert poor["supported"] is True and poor["delta"]["high"] < 0
    assert "Runs made with Inspect" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.slow
def test_inspect_missing_names_the_extra(inspect_logs):
    good, poor = inspect_logs["good"][0], inspect_logs["poor"][0]
    code = (
        "import sys; sys.modules['inspect_ai'] = None; sys.modules['inspect_ai.log'] = None\n"
        "from ada_slm.app.cli import main; "
        f"sys.argv = ['ada-slm', 'compare', '--arm', 'a={good}', '--arm', 'b={poor}']; main()"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    one_line_error(p, "pip install 'ada-slm[inspect]'")


# ------------------------------------------------------------------------------------------ TRL trainer_state.json
TRL_RUNS = [("lora", 1e-2, 0), ("lora", 1e-2, 1), ("lora", 1e-2, 2), ("frozen", 0.0, 0), ("frozen", 0.0, 1)]


@pytest.fixture(scope="module")
def trl_runs(tmp_path_factory):
    """Real TRL SFTTrainer runs (LoRA on the tiny LFM2, 4 steps, eval every 2): learning rate 1e-2 at three
    seeds, and learning rate 0 (the adapter never moves: the planted difference) at two."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from ada_slm.run import models

    root = tmp_path_factory.mktemp("trl")
    pairs = [
        ("France", "Paris"),
        ("Germany", "Berlin"),
        ("Italy", "Rome"),
        ("Spain", "Madrid"),
        ("Japan", "Tokyo"),
        ("Egypt", "Cairo"),
        ("Peru", "Lima"),
        ("Cuba", "Havana"),
    ]
    data = Dataset.from_list([{"text": f"The capital of {c} is {k}."} for c, k in pairs * 2])
    out = {}
    for arm, lr, seed in TRL_RUNS:
        folder = root / f"{arm}-s{seed}"
        args = SFTConfig(
            output_dir=str(folder),
            max_steps=4,
            per_device_train_batch_size=4,
            learning_rate=lr,
            eval_strategy="steps",
            eval_steps=2,
            logging_steps=1,
            save_strategy="no",
            seed=seed,
            report_to=[],
            use_cpu=True,
            max_length=32,
            disable_tqdm=True,
        )
        trainer = SFTTrainer(
            model=str(models.resolve("tiny-lfm2")),
            args=args,
            train_dataset=data,
            eval_dataset=data.select(range(4)),
            peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"),
        )
        trainer.train()
        trainer.save_state()  # <output_dir>/trainer_state.json
        out.setdefault(arm, []).append(folder)
    return out


@pytest.mark.slow
def test_trainer_state_run_level_quantities(trl_runs, tmp_path):
    folder = trl_runs["lora"][0]
    history = json.loads((folder / "trainer_state.json").read_text())["log_history"]
    run = read_trainer_state(folder)
    evals = [e["eval_loss"] for e in history if "eval_loss" in e]
    assert len(evals) == 2
    assert run.scores["final_eval_loss"] == {"run": evals[-1]} and run.scores["best_eval_loss"] == {"run": min(evals)}
    assert run.scores["final_train_loss"] == {"run": [e["loss"] for e in history if "loss" in e][-1]}
    assert run.scores["train_runtime"]["run"] == history[-1]["train_runtime"] > 0
    arms = [
        f"--arm=lora={','.join(map(str, trl_runs['lora']))}",
        f"--arm=frozen={','.join(map(str, trl_runs['frozen']))}",
    ]
    out = compared(run_compare(*arms, "--baseline", "frozen", "--json", "--out", tmp_path / "report"))
    assert out["primary"] == "final_eval_loss" and "final_eval_loss" in out["lower_is_better"]
    lowered = out["comparisons"]["lora"]["metrics"]["final_eval_loss"]
    assert lowered["supported"] is True and lowered["delta"]["high"] < 0  # training lowered the held-out loss
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Lower is better for best_eval_loss, final_eval_loss, final_train_loss, train_runtime" in md
    assert "Runs made with HF Trainer / TRL" in md and "final_eval_loss: one number per run." in md


# ------------------------------------------------------------------------------------------ ada-slm run folders
@pytest.fixture(scope="module")
def ada_slm_runs(tmp_path_factory):
    """`ada-slm train` (tiny LFM2, 2 steps) and `ada-slm eval` (4 suite items) at seeds 0-3."""
    from typer.testing import CliRunner

    from ada_slm.app.cli import app

    root = tmp_path_factory.mktemp("ada")
    runner = CliRunner()
    out = []
    for seed in range(4):
        run_dir = root / f"seed{seed}"
        r = runner.invoke(
            app,
            [
                "train",
                "base=tiny-lfm2",
                "data.size=40",
                "max_steps=2",
                "batch.micro=2",
                "batch.accum=2",
                "max_length=160",
                f"seed={seed}",
                f"out_dir={run_dir}",
                "--quiet",
            ],
        )
        assert r.exit_code == 0, r.output[-2000:]
        r = runner.invoke(app, ["eval", str(run_dir), "--limit", "4", "--max-new-tokens", "8", "--quiet"])
        assert r.exit_code == 0, r.output[-2000:]
        out.append(run_dir)
    return out


@pytest.mark.slow
def test_ada_slm_run_folders(ada_slm_runs):
    from ada_slm.analysis.compare.readers import read_ada_slm

    run = read_ada_slm(ada_slm_runs[0])
    rows = [json.loads(line) for line in (ada_slm_runs[0] / "eval.jsonl").open()]
    assert sorted(run.scores["agl_awareness"]) == sorted(r["id"] for r in rows)
    assert run.scores["well_formed"] == {r["id"]: r["metrics"]["well_formed"] for r in rows}
    record = json.loads((ada_slm_runs[0] / "record.json").read_text())
    assert run.scores["heldout_loss"] == {"run": record["train"]["final_val_loss"]}
    assert run.task["suite"] == "multilang" and run.task["n_items"] == 4
    a, b = ",".join(map(str, ada_slm_runs[:2])), ",".join(map(str, ada_slm_runs[2:]))
    out = compared(run_compare("--arm", f"s01={a}", "--arm", f"s23={b}", "--metric", "heldout_loss", "--json"))
    assert out["items"]["agl_awareness"]["n_shared"] == 4
    assert out["comparisons"]["s23"]["metrics"]["heldout_loss"]["supported"] is False  # same config, other seeds


def test_a_run_in_two_arms_is_refused(tmp_path):
    table = write_csv(tmp_path / "t.csv", [r | {"arm": ""} for r in crossed_rows({"a": 0.0}, n_items=5)])
    one_line_error(run_compare("--arm", f"a={table}", "--arm", f"b={table}"), "run a-0 (")
    one_line_error(run_compare("--arm", f"a={table}", "--arm", f"b={table}"), "is listed in arms a and b")


@pytest.mark.slow
def test_ada_slm_runs_get_the_study_statistics(ada_slm_runs, tmp_path):
    """The same runs as a study sees them (analysis.collect over RunSpecs) and as compare reads them give the
    same Δ, CI and Holm p on every metric."""
    from ada_slm.analysis.analysis import collect
    from ada_slm.run.metrics import METRICS, RUN_METRICS
    from ada_slm.run.records import RunPaths
    from ada_slm.stats import contrasts
    from ada_slm.study.spec import RunSpec

    (tmp_path / "results" / "cmp").mkdir(parents=True)
    for arm in ("s01", "s23"):  # results/cmp/<arm>/seed<k> is the run folder <root>/seed<k>
        (tmp_path / "results" / "cmp" / arm).symlink_to(ada_slm_runs[0].parent)
    specs = [
        RunSpec(RunPaths(tmp_path / "results", tmp_path, "cmp", arm, k), None, "tiny-lfm2", {})
        for k, arm in enumerate(["s01", "s01", "s23", "s23"])
    ]
    study_arms = collect(specs)
    expected = contrasts.compare_all(study_arms["s23"].scores, study_arms["s01"].scores, [*METRICS, *RUN_METRICS])
    got = compare(CompareSpec(arms={"s01": list(map(str, ada_slm_runs[:2])), "s23": list(map(str, ada_slm_runs[2:]))}))
    comps = got.analysis.comparisons["s23"].comparisons
    assert set(comps) == set(expected) and expected
    for m, c in expected.items():
        assert comps[m].delta.mean == pytest.approx(c.delta.mean, nan_ok=True)
        assert comps[m].delta.low == pytest.approx(c.delta.low, nan_ok=True)
        assert comps[m].p_holm == pytest.approx(c.p_holm, nan_ok=True)


def test_the_default_baseline_is_the_arm_named_base():
    from ada_slm.analysis.compare.analysis import CompareSpec

    assert CompareSpec(arms={"tuned": ["a"], "base": ["b"]}).baseline_arm == "base"
    assert CompareSpec(arms={"tuned": ["a"], "other": ["b"]}).baseline_arm == "tuned"
    assert CompareSpec(arms={"tuned": ["a"], "base": ["b"]}, baseline="tuned").baseline_arm == "tuned"


def test_the_printed_summary_fits_80_columns_and_wide_gives_tables(tmp_path):
    table = write_csv(tmp_path / "t.csv", crossed_rows({"a": 0.0, "base": 0.5}, n_items=10))
    narrow = run_compare(table)
    assert narrow.returncode == 0 and max(len(line) for line in narrow.stdout.splitlines()) <= 80, narrow.stdout
    assert "  vs baseline: Δ " in narrow.stdout and "|" not in narrow.stdout  # a block per row, no table
    wide = run_compare(table, "--wide").stdout
    assert "vs baseline" in wide and "  vs baseline: Δ " not in wide  # the Markdown tables
