"""Time and power of a study before any of its runs: what `ada-slm study plan` prints.

Time. Training throughput (tokens/s, tokens per sequence) and evaluation seconds per item are measured once per
machine kind, precision, base model and sequence cap, and kept with the model cache, in
$ADA_SLM_CACHE/throughput.json: the
first finished runs a study records on a machine kind write its entry (`study run` and `study plan` do), and
later entries never overwrite it. A machine kind without an entry gets an estimate from the measurements in the
docs' Performance page (`KNOWN`), printed as an estimate; without either, no time is printed.

Power. The smallest Δ the seed-level rule detects with 80 % power at the plan's runs per arm and item count, from
the study's own finished runs once it has them, before that from default variance components of the metric
(`DEFAULT_COMPONENTS`), with α the first Holm step over the decision's questions.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from ada_slm.analysis.analysis import questions_asked
from ada_slm.analysis.arms import collect
from ada_slm.analysis.design import same_computation
from ada_slm.analysis.power import power, power_from
from ada_slm.files import write_json
from ada_slm.run import hardware, models, records
from ada_slm.run.config import TrainConfig
from ada_slm.run.suites import load_suite, subset
from ada_slm.stats.power_simulation import PowerInputs
from ada_slm.study.spec import estimate_seconds, record_of, state_of

THROUGHPUT_FILE = "throughput.json"


@dataclass
class Throughput:
    tokens_per_s: float  # training tokens per second
    tokens_per_sequence: float  # mean tokens of one training sequence
    eval_s_per_item: float | None  # generation seconds per suite item at `eval_max_new_tokens`
    eval_max_new_tokens: int | None
    source: str  # where the numbers come from, in words
    estimate: bool  # True: not measured on this machine kind
    overhead_s: float | None = None  # a run's seconds besides its training steps and generation (set-up, held-out
    # loss, export, perplexity), measured from the records' run_wall_s


# (machine kind, base model) -> (tokens/s, tokens per sequence, eval s per item, its max_new_tokens, source).
# Precision is the fixed rule of hardware.resolve_precision: bf16 on AMX, fp32 elsewhere.
KNOWN = {
    ("amx", "smollm2-135m"): (
        170.0,
        71.0,
        None,
        None,
        "docs/guides/cpu-scale.md: 4 × 4 steps of 1,135 tokens / 16 sequences, 2 cores, bf16",
    ),
    ("avx2", "smollm2-135m"): (87.0, 71.0, None, None, "docs/performance.md, the AVX2 table: 2 cores, fp32"),
    ("avx512", "smollm2-135m"): (
        140.0,
        71.0,
        35 / 133,
        48,
        "a phase14d cpu run (docs/performance.md): a 4 × 4 run of 320 sequences ≈ 160 s of training, "
        "133 items evaluated in ≈ 35 s, 2 cores, fp32",
    ),
}

# Metric -> variance components measured on a real study, for power before a study has runs of its own.
DEFAULT_COMPONENTS = {
    "agl_awareness": (
        PowerInputs(
            run_mean_sd=0.0161,
            residual_sd=0.0985,
            interaction_sd=0.185,
            n_items=133,
            paired_run_mean_sd=0.0109,
            paired_residual_sd=0.0955,
        ),
        "phase14d --scale cpu, 12 runs kept (base, v9B, v9C, v9D × 3 seeds; AMX, bf16): SD of a run's "
        "mean 0.0161 (0.0109 left after pairing by seed), arm × item SD 0.185, residual SD 0.0985",
    ),
}


# ------------------------------------------------------------------------------------------ the cache
def cache_path() -> Path:
    """$ADA_SLM_THROUGHPUT if set, else beside the converted models: $ADA_SLM_CACHE/throughput.json. (The test
    suite points it at a temporary file: a measurement taken under test load must not become this machine's.)"""
    if os.environ.get("ADA_SLM_THROUGHPUT"):
        return Path(os.environ["ADA_SLM_THROUGHPUT"])
    return models.cache_dir().parent / THROUGHPUT_FILE


def machine_key(kind: str, precision: str, base: str, max_length: int | None) -> str:
    """What a kept throughput is a measurement of: the machine kind, the precision it runs at there, the base
    model and the sequence cap (the tokens per sequence depend on it)."""
    return f"{kind}/{precision}/{base}/max_length {max_length}"


def this_machine(precision_request: str = "auto") -> tuple[str, str]:
    """(machine kind, precision a run with `precision_request` would use here)."""
    import torch

    device = hardware.default_device()
    precision, _ = hardware.resolve_precision(precision_request, device)
    kind = f"cuda {torch.cuda.get_device_name(0)}" if device.type == "cuda" else hardware.machine_kind()
    return kind, precision


def read_store(path: Path | None = None) -> dict:
    """The kept measurements; an unreadable file counts as none (it is rewritten by the next measurement)."""
    path = path or cache_path()
    try:
        store = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return store if isinstance(store, dict) else {}


def _record_key(rec: dict) -> str | None:
    meta = rec.get("meta") or {}
    choice = meta.get("precision_choice") or {}
    kind = choice.get("machine_kind") or (
        f"cuda {meta['device_name']}" if meta.get("device") == "cuda" and meta.get("device_name") else None
    )
    if not kind or not meta.get("precision") or not meta.get("base"):
        return None
    return machine_key(kind, meta["precision"], meta["base"], (rec.get("config") or {}).get("max_length"))


def measurements(records: list[tuple[str, dict]]) -> dict[str, dict]:
    """Entries of the cache from finished runs' records [(study, record)]: per machine key the mean tokens/s,
    tokens per sequence and evaluation seconds per item of the runs measured there."""
    found: dict[str, list[tuple[str, dict]]] = {}
    for study, rec in records:
        train = rec.get("train") or {}
        key = _record_key(rec)
        if key and train.get("tokens_per_s") and train.get("steps"):
            found.setdefault(key, []).append((study, rec))
    out = {}
    for key, runs in found.items():
        try:
            out[key] = _entry(runs)
        except (KeyError, TypeError, ValueError, ZeroDivisionError):  # a record of another shape: no measurement
            continue
    return out


def _entry(runs: list[tuple[str, dict]]) -> dict:
    """One cache entry from the finished runs of one machine key."""
    per_seq = [
        sum(s["tokens"] for s in r["train"]["steps"]) / max(1, sum(s["sequences"] for s in r["train"]["steps"]))
        for _, r in runs
    ]
    # an evaluation served by the eval cache took ~0 s of generation: not a measurement of this machine's speed
    evals = [
        r["eval"]
        for _, r in runs
        if (r.get("eval") or {}).get("generation_s") and r["eval"].get("n_items") and not r["eval"].get("cached_from")
    ]
    entry = {
        "tokens_per_s": statistics.mean(r["train"]["tokens_per_s"] for _, r in runs),
        "tokens_per_sequence": statistics.mean(per_seq),
        "runs": len(runs),
        "study": runs[0][0],
        "measured": dt.date.today().isoformat(),
    }
    overheads = [_overhead(r) for _, r in runs]
    if any(o is not None for o in overheads):
        entry["overhead_s"] = statistics.mean(o for o in overheads if o is not None)
    threads = {(r.get("meta") or {}).get("torch_threads") for _, r in runs}
    if len(threads) == 1 and None not in threads:
        entry["threads"] = threads.pop()
    if evals:
        entry["eval_s_per_item"] = statistics.mean(e["generation_s"] / e["n_items"] for e in evals)
        entry["eval_max_new_tokens"] = evals[0]["generation"]["max_new_tokens"]
    return entry


def _overhead(rec: dict) -> float | None:
    """A finished run's seconds besides its training steps and its generation (None without meta.run_wall_s)."""
    wall = (rec.get("meta") or {}).get("run_wall_s")
    if not wall:
        return None
    steps = sum(s["tokens"] for s in rec["train"]["steps"]) / rec["train"]["tokens_per_s"]  # Σ step seconds
    generation = (rec.get("eval") or {}).get("generation_s") or 0.0
    return max(0.0, wall - steps - generation)


def remember(records: list[tuple[str, dict]], path: Path | None = None) -> list[str]:
    """Keep the measurements of machine keys the cache does not have yet (measured once); returns those added.
    A cache that cannot be written is skipped: the estimate is a convenience, never a reason to fail a run."""
    path = path or cache_path()
    store = read_store(path)
    new = {k: v for k, v in measurements(records).items() if k not in store}
    if new:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, store | new)
        except OSError:
            return []
    return sorted(new)


def throughput_for(kind: str, precision: str, base: str, max_length: int | None, store: dict) -> Throughput | None:
    """This machine kind's kept measurement for `base`, else the documented estimate for the kind, else None."""
    entry = store.get(machine_key(kind, precision, base, max_length))
    if isinstance(entry, dict) and entry.get("tokens_per_s") and entry.get("tokens_per_sequence"):
        threads = f", {entry['threads']} thread(s) per run" if entry.get("threads") else ""
        return Throughput(
            float(entry["tokens_per_s"]),
            float(entry["tokens_per_sequence"]),
            entry.get("eval_s_per_item"),
            entry.get("eval_max_new_tokens"),
            f"measured on this machine kind ({kind}, {precision}) on {entry.get('measured', '?')} in "
            f"study {entry.get('study', '?')} ({entry.get('runs', '?')} runs{threads})",
            False,
            entry.get("overhead_s"),
        )
    known = KNOWN.get((kind, base))
    if known:
        return Throughput(
            *known[:4], f"ESTIMATE for machine kind {kind}, not measured on this machine: {known[4]}", True
        )
    return None


def eval_seconds(t: Throughput, n_items: int, max_new_tokens: int) -> float | None:
    """Generation time of one run's evaluation, scaled by the generation budget from the measured one."""
    if not t.eval_s_per_item or not t.eval_max_new_tokens:
        return None
    return t.eval_s_per_item * n_items * max_new_tokens / t.eval_max_new_tokens


# ------------------------------------------------------------------------------------------ power
def items_for(metric: str, suite_items: list) -> int:
    """Items a metric is scored on (metrics.score: certainty_match needs an expected glyph, translation_chrf a
    reference; the others apply to every item)."""
    if metric == "certainty_match":
        return sum(1 for i in suite_items if i.expected_certainty)
    if metric == "translation_chrf":
        return sum(1 for i in suite_items if i.reference)
    return len(suite_items)


def _rescaled_run_mean_sd(run_mean_sd: float, residual_sd: float, measured_items: int, n_items: int) -> float:
    """A run's mean = training-run effect + the residual averaged over the items: the SD at another item count."""
    seed_var = max(0.0, run_mean_sd**2 - residual_sd**2 / measured_items)
    return (seed_var + residual_sd**2 / n_items) ** 0.5


def default_power(metric: str, n_seeds: int, n_items: int, n_tests: int, pairing: str = "seed"):
    """(analysis.Power, source) from the default components of `metric` at this design (runs paired by seed
    unless the study's `pairing` is none); None without defaults."""
    if metric not in DEFAULT_COMPONENTS or n_seeds < 2 or n_items < 1:
        return None
    m, source = DEFAULT_COMPONENTS[metric]
    inputs = PowerInputs(
        _rescaled_run_mean_sd(m.run_mean_sd, m.residual_sd, m.n_items, n_items),
        m.residual_sd,
        m.interaction_sd,
        n_items,
    )
    if pairing == "seed" and m.paired_run_mean_sd is not None and m.paired_residual_sd is not None:  # m.can_pair
        inputs.paired_run_mean_sd = _rescaled_run_mean_sd(
            m.paired_run_mean_sd, m.paired_residual_sd, m.n_items, n_items
        )
        inputs.paired_residual_sd = m.paired_residual_sd
    return power_from(inputs, metric, n_seeds, n_tests), source


def finished_records(specs) -> list[tuple[str, dict]]:
    """(study name, record as record.json holds it) of the specs' complete runs with a training part (the
    measurements read records as JSON data: a record of another shape is skipped, not an error)."""
    out = []
    for s in specs:
        rec = record_of(s)
        if s.train is not None and rec and records.is_complete(rec):
            out.append((s.run_dir.parent.parent.name, rec.model_dump(exclude_unset=True)))
    return out


def throughput_of(
    spec, measured_rate: float | None, measured_per_seq: float | None, store: dict, max_length: int | None = None
) -> Throughput | None:
    """The throughput a run's time is estimated from: this study's finished runs, else the kept measurement of
    this machine kind, else the documented estimate for it. `max_length`: the study's, for the base arm (which
    does not train, but is evaluated at the kept speed)."""
    if measured_rate and measured_per_seq:
        own = _own_measurement(spec)
        return Throughput(
            measured_rate,
            measured_per_seq,
            own.get("eval_s_per_item"),
            own.get("eval_max_new_tokens"),
            "this study's finished runs",
            False,
            own.get("overhead_s"),
        )
    kind, precision = this_machine(spec.train.precision if spec.train else "auto")
    return throughput_for(kind, precision, spec.base, spec.train.max_length if spec.train else max_length, store)


def _own_measurement(spec) -> dict:
    """Generation and overhead measured by the finished runs of `spec`'s study folder (its results/<study>)."""
    study_dir = spec.run_dir.parent.parent
    runs = []
    for path in sorted(study_dir.glob("*/*/" + records.RECORD)):
        rec = records.read_record_or_none(path.parent)
        if rec is not None and records.is_complete(rec) and rec.train is not None and rec.train.steps:
            runs.append((study_dir.name, rec.model_dump(exclude_unset=True)))
    try:
        return _entry(runs) if runs else {}
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return {}


def run_seconds(spec, t: Throughput, n_items: int) -> tuple[float, float, float]:
    """(training steps, generation, the rest) of one run's estimated seconds; the base arm only evaluates."""
    train = estimate_seconds(spec.train, t.tokens_per_s, t.tokens_per_sequence) or 0.0
    generation = eval_seconds(t, n_items, spec.eval["max_new_tokens"]) or 0.0
    return train, generation, (t.overhead_s or 0.0)


def repeated_computations(study, specs) -> list[str]:
    """A line per pair of arms whose runs compute the same steps (design.same_computation): runs spent twice."""
    configs: dict[str, TrainConfig] = {}
    for s in specs:
        if s.train is not None:
            configs.setdefault(s.arm, s.train)
    names, lines = list(configs), []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if same_computation(configs[a], configs[b]):
                lines.append(
                    f"note: {a} and {b} compute the same steps (they differ only in micro × accum, the loss "
                    f"is normalised per {configs[a].loss.normalisation} over the step and both are executed "
                    "grouped by length): "
                    f"each seed of {b} is that seed of {a}, number for number — `study run` trains it once and "
                    "reuses it "
                    "(record meta.computed_by)"
                )
    return lines


def estimated_seconds(specs, measured_rate: float | None, measured_per_seq: float | None, store: dict):
    """(training, generation, set-up seconds summed over the runs still to do, the throughput sources used, the
    base models without one): what `plan_report` prints and `study plan --budget-hours` checks."""
    total_train = total_eval = total_rest = 0.0
    sources, missing = {}, set()
    for s in specs:
        n_items = len(subset(load_suite(s.eval["suite"])[0].items, s.eval.get("limit")))
        study_length = next((x.train.max_length for x in specs if x.train and x.base == s.base), None)
        t = throughput_of(s, measured_rate, measured_per_seq, store, study_length)
        if t is None:
            missing.add(s.base)
            continue
        sources[t.source] = t
        if state_of(s) != "done":
            train, generation, rest = run_seconds(s, t, n_items)
            total_train, total_eval, total_rest = total_train + train, total_eval + generation, total_rest + rest
    return total_train, total_eval, total_rest, sources, missing


def plan_report(
    study, specs, measured_rate: float | None, measured_per_seq: float | None, store: dict | None = None, jobs: int = 1
) -> list[str]:
    """The lines `study plan` prints after its table: estimated time (this study's runs, else this machine
    kind's kept measurement, else the documented estimate) of the runs `jobs` at a time, and the power of the
    design."""
    lines = []
    store = read_store() if store is None else store
    total_train, total_eval, total_rest, sources, missing = estimated_seconds(
        specs, measured_rate, measured_per_seq, store
    )
    for source, t in sources.items():
        lines.append(
            f"throughput: {t.tokens_per_s:,.0f} tokens/s, {t.tokens_per_sequence:.0f} tokens per sequence — {source}"
        )
    if sources:
        est = "ESTIMATED " if any(t.estimate for t in sources.values()) else ""
        todo = sum(1 for s in specs if state_of(s) != "done")
        parts = [
            f"training {total_train / 60:.1f} min",
            f"evaluation {total_eval / 60:.1f} min" if total_eval else "evaluation (not measured on this machine kind)",
            f"set-up, held-out loss and export {total_rest / 60:.1f} min"
            if total_rest
            else "set-up (not measured yet)",
        ]
        wall = (total_train + total_eval + total_rest) / max(1, jobs)
        lines.append(
            f"{est}time of the {todo} runs to do: {' + '.join(parts)} of runs; {jobs} at a time "
            f"(--jobs): ≈ {wall / 60:.1f} min of wall time"
        )
    lines += repeated_computations(study, specs)
    if missing:
        kind, precision = this_machine()
        lines.append(
            f"no throughput known for {', '.join(sorted(missing))} on machine kind {kind} ({precision}): run "
            "one arm (`ada-slm study run FILE --only ARM --seeds 0`) and it is kept for every later plan"
        )
    return lines + power_lines(study, specs)


def power_lines(study, specs) -> list[str]:
    """`study plan`'s power of the design: from the study's finished runs, else the default components."""
    lines = []
    metric = study.decision.metric if study.decision else "agl_awareness"
    n_tests = len(questions_asked(study, specs)) or 1  # Holm over the questions these runs ask, as the report
    seeds = sorted({s.seed for s in specs if s.arm == study.baseline}) or sorted({s.seed for s in specs})
    own = power(study, collect(specs), metric, n_tests=n_tests) if finished_records(specs) else None
    if own is not None:
        pw, source = own, "this study's finished runs"
    else:
        n_items = items_for(metric, subset(load_suite(specs[0].eval["suite"])[0].items, specs[0].eval.get("limit")))
        found = default_power(metric, len(seeds), n_items, n_tests, study.pairing)
        if found is None:
            lines.append(
                f"power: no default variance components for {metric} (and fewer than 2 runs per arm): "
                "`ada-slm study power FILE --run-mean-sd …` takes stated ones"
            )
            return lines
        pw, source = found[0], "default components: " + found[1]
    i = pw.inputs
    lines.append(
        f"power on {metric} from {source}; {i.n_items} items, run-mean SD {i.run_mean_sd:.4f}, α {pw.alpha:.3g} "
        f"(first Holm step over {n_tests} question(s)):"
    )
    lines.append(
        f"  smallest Δ detected with 80 % power at {pw.n_seeds} runs per arm (this plan"
        + (", runs paired by seed" if pw.paired else "")
        + f"): {pw.detectable[pw.n_seeds]:.4f}; "
        + ", ".join(f"{k} runs {v:.4f}" for k, v in pw.detectable.items() if k != pw.n_seeds)
    )
    if pw.detectable_unpaired:
        lines.append(
            f"  the same runs unpaired (study `pairing: none`): {pw.detectable_unpaired[pw.n_seeds]:.4f} at "
            f"{pw.n_seeds} runs per arm, against {pw.detectable[pw.n_seeds]:.4f} paired by seed"
        )
    return lines
