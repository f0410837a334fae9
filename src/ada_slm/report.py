"""Study report: the seed's tables, regenerated with statistics, plus plots and the decision.

The report is a list of blocks (heading, paragraph, table, image) rendered twice: Markdown (report.md) and a
self-contained HTML page with the images embedded (report.html).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ada_slm import stats
from ada_slm.files import atomic_write_text, iter_jsonl
from ada_slm.metrics import METRICS, SEED_METRICS, seed_score
from ada_slm.study import BASE_ARM, RunSpec, Study, differences, estimate_seconds, measured_throughput, record_of


@dataclass
class ArmData:
    name: str
    config: dict | None  # resolved train config of the first seed (None for base)
    records: dict[int, dict]  # seed -> record
    scores: dict[str, dict[int, dict[str, float | None]]]  # metric -> seed -> item -> score
    seed_scores: dict[str, dict[int, dict[str, float]]]  # seed-compatible scorer, same layout
    states: dict[int, str]


def collect(specs: list[RunSpec]) -> dict[str, ArmData]:
    arms: dict[str, ArmData] = {}
    for s in specs:
        arm = arms.setdefault(s.arm, ArmData(s.arm, s.train, {}, {m: {} for m in METRICS},
                                             {m: {} for m in SEED_METRICS}, {}))
        rec = record_of(s)
        state = (rec or {}).get("status", {}).get("state", "pending") if rec else "pending"
        arm.states[s.seed] = state
        if not rec or state != "complete" or not (s.run_dir / "eval.jsonl").is_file():
            continue
        arm.records[s.seed] = rec
        for _, row in iter_jsonl(s.run_dir / "eval.jsonl"):
            for m in METRICS:
                arm.scores[m].setdefault(s.seed, {})[row["id"]] = row["metrics"].get(m)
            compat = seed_score(row["output"])
            for m in SEED_METRICS:
                arm.seed_scores[m].setdefault(s.seed, {})[row["id"]] = compat[m]
    return arms


# ----------------------------------------------------------------------------------------- formatting
def f4(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def ci4(iv: stats.Interval | None) -> str:
    if iv is None or math.isnan(iv.mean):
        return "—"
    return f"{iv.mean:.4f} [{iv.low:.4f}, {iv.high:.4f}]"


def signed(iv: stats.Interval) -> str:
    return f"{iv.mean:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}]"


def arm_matrix(arm: ArmData, metric: str) -> np.ndarray | None:
    data = arm.scores[metric]
    if not data:
        return None
    seeds = sorted(data)
    items = sorted(set.intersection(*(set(data[s]) for s in seeds)))
    y = np.array([[np.nan if data[s][i] is None else data[s][i] for i in items] for s in seeds], dtype=float)
    return y if np.isfinite(y).any() else None


def describe(cfg: dict | None) -> str:
    if cfg is None:
        return "base model, no adapter"
    b, lo = cfg["batch"], cfg["lora"]
    steps = f"{cfg['max_steps']} steps" if cfg["max_steps"] else f"{cfg['epochs']:g} epochs"
    return (f"r{lo['r']}/α{lo['alpha']:g}, {b['micro']}×{b['accum']}={b['micro'] * b['accum']}, "
            f"{cfg['data']['size']} ex, {steps}")


# ----------------------------------------------------------------------------------------- the report
class Doc:
    def __init__(self):
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[str]]):
        self.blocks.append(("table", header, rows))

    def image(self, path: Path, alt: str):
        self.blocks.append(("img", path, alt))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "table":
                out.append("| " + " | ".join(b[1]) + " |")
                out.append("|" + "|".join("---" for _ in b[1]) + "|")
                out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in b[2]]
            elif b[0] == "img":
                out.append(f"![{b[2]}]({b[1].name})")
            out.append("")
        return "\n".join(out)

    def html(self, title: str) -> str:
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
                 "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
                 "line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
                 "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child"
                 "{text-align:left}th{background:#f3f3f3}img{max-width:100%}code{background:#f6f6f6}</style>"
                 "</head><body>"]
        for b in self.blocks:
            if b[0] == "h":
                parts.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                parts.append(f"<p>{html.escape(b[1]).replace(chr(10), '<br>')}</p>")
            elif b[0] == "table":
                head = "".join(f"<th>{html.escape(c)}</th>" for c in b[1])
                body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in b[2])
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif b[0] == "img":
                data = base64.b64encode(b[1].read_bytes()).decode()
                parts.append(f"<p><img alt='{html.escape(b[2])}' src='data:image/png;base64,{data}'></p>")
        parts.append("</body></html>")
        return "\n".join(parts)


def _loss_summary(arm: ArmData) -> tuple[str, str]:
    vals = [r["train"]["final_val_loss"] for r in arm.records.values() if r.get("train") and
            r["train"].get("final_val_loss") is not None]
    train = [r["train"]["final_train_loss"] for r in arm.records.values() if r.get("train")]

    def fmt(v):
        if not v:
            return "—"
        return f"{np.mean(v):.3f}" + (f" ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else "")

    return fmt(vals), fmt(train)


def build_report(study: Study, specs: list[RunSpec], scale: str | None, out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = collect(specs)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = Doc()
    baseline = study.baseline
    base_arm = arms.get(BASE_ARM)
    n_done = sum(1 for a in arms.values() for s in a.states.values() if s == "complete")
    n_failed = sum(1 for a in arms.values() for s in a.states.values() if s == "failed")
    seeds = sorted({s.seed for s in specs})
    any_eval = next((r["eval"] for a in arms.values() for r in a.records.values() if r.get("eval")), None)

    doc.h(1, f"Study {study.name}")
    if study.description.strip():
        doc.p(study.description.strip())
    doc.p(f"Scale preset: {scale or 'as written (no preset)'} · seeds {', '.join(map(str, seeds))} · "
          f"runs complete {n_done}/{len(specs)}" + (f", failed {n_failed}" if n_failed else "") +
          f" · generated {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}")
    if any_eval:
        g = any_eval["generation"]
        doc.p(f"Every arm: suite {any_eval['suite']} ({any_eval['n_items']} items), {g['mode']} generation, "
              f"max_new_tokens {g['max_new_tokens']}, eval batch size {g['batch_size']}. Losses are mean "
              "cross-entropy per answer token over each optimizer step (prompt masked), so they are comparable "
              "across arms whatever their micro-batch × accumulation split; the held-out loss is the primary "
              "loss column.")

    # noise floor per metric: the base model's upper CI bound (below it a baseline is indistinguishable from
    # an untrained model)
    floors = {}
    if base_arm:
        for m in METRICS:
            y = arm_matrix(base_arm, m)
            if y is not None:
                floors[m] = stats.arm_interval(y).high

    # ---- full series summary
    doc.h(2, "Full series summary")
    ref = arms.get(baseline)
    rows = []
    primary = study.decision.metric if study.decision else "agl_awareness"
    for name, arm in arms.items():
        y = arm_matrix(arm, primary)
        iv = stats.arm_interval(y) if y is not None else None
        vs = "—"
        if name != baseline and ref is not None:
            c = stats.compare(arm.scores[primary], ref.scores[primary], primary, floors.get(primary, 0.0))
            if c:
                vs = f"Δ {signed(c.delta)}; " + (f"× {c.ratio[0]:.2f}" if c.ratio else c.ratio_note)
        val, train = _loss_summary(arm)
        status = ", ".join(f"{v} {sum(1 for s in arm.states.values() if s == v)}"
                           for v in sorted(set(arm.states.values())))
        rows.append([name + (" (baseline)" if name == baseline else ""), describe(arm.config), val, train,
                     ci4(iv), vs, status])
    doc.table(["arm", "config", "held-out loss", "final train loss", f"{primary} [95% CI]", "vs baseline",
               "runs"], rows)

    # ---- per-metric comparisons
    doc.h(2, f"Per-metric comparison against {baseline}")
    doc.p("Δ is paired by eval item and seed, with a 95 % hierarchical bootstrap CI (seeds, then items); p is "
          "a paired sign-flip permutation test, Holm-corrected across the metrics of one comparison. % and × "
          "are shown only when the baseline's CI excludes 0 and its mean is above the base model's noise floor; "
          "otherwise 'n/a (baseline ≈ 0)'. 'real' = CI excludes 0 and Holm p < 0.05; "
          "'not distinguishable' = these seeds and items cannot tell the arms apart on that metric.")
    comparisons = {}
    for name, arm in arms.items():
        if name == baseline or ref is None:
            continue
        if not arm.records:
            states = ", ".join(f"seed {k}: {v}" for k, v in sorted(arm.states.items()))
            doc.h(3, f"{name} vs {baseline}")
            doc.p(f"No finished runs to compare ({states}).")
            continue
        fd = stats.factors_between(differences(arm.config, ref.config))
        comparisons[name] = stats.compare_all(arm.scores, ref.scores, list(METRICS), floors)
        doc.h(3, f"{name} vs {baseline}")
        label = ", ".join(f"{k}: {v[1]} → {v[0]}" for k, v in fd.factors.items()) or "nothing"
        note = f"Differs in {label}."
        if name == BASE_ARM:
            note += " (The base model: the untrained floor.)"
        elif fd.confounded:
            note += (" CONFOUNDED: more than one factor changes, so this difference cannot be attributed to "
                     "any one of them.")
        if "batch split" in fd.factors and not stats.effective_changes(arm.config, ref.config):
            note += (" The micro × accum split keeps the effective batch, and with the per-token loss both "
                     "splits train the same objective: treat their difference as seed noise unless its CI "
                     "excludes 0.")
        doc.p(note)
        rows = []
        for m, c in comparisons[name].items():
            pct = f"{c.percent[0]:+.1f}% [{c.percent[1]:+.1f}, {c.percent[2]:+.1f}]" if c.percent else c.ratio_note
            ratio = f"{c.ratio[0]:.2f}× [{c.ratio[1]:.2f}, {c.ratio[2]:.2f}]" if c.ratio else c.ratio_note
            rows.append([m, ci4(c.baseline), f4(c.baseline.mean + c.delta.mean), signed(c.delta), pct, ratio,
                         f"{c.p_holm:.3f}", "real" if c.significant else "not distinguishable"])
        doc.table(["metric", f"{baseline} [CI]", name, "Δ [95% CI]", "%", "×", "p (Holm)", "difference"], rows)
        seeds_needed = stats.required_seeds(arm.scores[primary], ref.scores[primary])
        if seeds_needed:
            doc.p(f"Seeds per arm needed to detect the observed {primary} difference with 80 % power: "
                  f"{seeds_needed} (from the seed-to-seed spread; this study ran {len(arm.records)}).")

    # ---- factorial and ordered-factor analyses
    _factorial_section(doc, arms, primary)
    _goldilocks_section(doc, arms, primary)

    # ---- decision
    if study.decision:
        _decision_section(doc, study, arms, specs)

    # ---- seed-compatible scoring side by side
    doc.h(2, "Our metrics | seed-compatible scoring")
    doc.p("The seed study's scorer (distinct marker-list entries found as substrings ÷ word count; certainty "
          "= distinct glyphs / 5; protocol 1 / 0.5 / 0) applied to the same outputs. It differs from AGL.md's "
          "metrics in its marker lists, substring matching and ignoring repeats, so the two columns are not "
          "interchangeable.")
    rows = []
    for m in SEED_METRICS:
        row = [m]
        for name, arm in arms.items():
            y = arm_matrix(arm, m)
            ours = np.nanmean(y) if y is not None else None
            s = arm.seed_scores[m]
            theirs = np.mean([v for seed in s.values() for v in seed.values()]) if s else None
            row.append(f"{f4(ours)} | {f4(theirs)}")
        rows.append(row)
    doc.table(["metric"] + [f"{n} (ours | seed)" for n in arms], rows)

    # ---- plots
    _plots(doc, arms, primary, out_dir, plt)

    # ---- examples
    doc.h(2, "Example outputs")
    for name, arm in arms.items():
        spec = next((s for s in specs if s.arm == name and (s.run_dir / "eval.jsonl").is_file()), None)
        if spec is None:
            continue
        rows = [[r["id"], r["prompt"][:60], r["output"][:80]] for _, r in list(iter_jsonl(spec.run_dir / "eval.jsonl"))[:3]]
        doc.h(3, f"{name} (seed {spec.seed})")
        doc.table(["item", "prompt", "output"], rows)

    md_path = out_dir / "report.md"
    atomic_write_text(md_path, doc.markdown())
    atomic_write_text(out_dir / "report.html", doc.html(f"Study {study.name}"))
    atomic_write_text(out_dir / "comparisons.json", json.dumps(
        {arm: {m: {"delta": c.delta.mean, "low": c.delta.low, "high": c.delta.high, "p_holm": c.p_holm,
                   "ratio": c.ratio, "ratio_note": c.ratio_note, "significant": c.significant}
               for m, c in comps.items()} for arm, comps in comparisons.items()}, indent=2))
    return md_path


def _factor_levels(arms: dict[str, ArmData]) -> dict[str, dict]:
    """arm -> {factor: level} for trained arms (rank, effective batch, split, data size)."""
    out = {}
    for name, arm in arms.items():
        c = arm.config
        if c is None or not arm.records:
            continue
        out[name] = {"rank": c["lora"]["r"], "split": f"{c['batch']['micro']}×{c['batch']['accum']}",
                     "data size": c["data"]["size"], "effective batch": c["batch"]["micro"] * c["batch"]["accum"],
                     "rest": json.dumps({k: v for k, v in c.items() if k not in ("lora", "batch", "data", "seed",
                                                                                "out_dir", "export_dir")},
                                        sort_keys=True) + str(c["lora"]["alpha"] / c["lora"]["r"])}
    return out


def _factorial_section(doc: Doc, arms: dict[str, ArmData], metric: str):
    levels = _factor_levels(arms)
    factors = ["rank", "split", "data size"]
    found = False
    for i, f1 in enumerate(factors):
        for f2 in factors[i + 1:]:
            others = [f for f in factors if f not in (f1, f2)] + ["rest"]
            groups: dict[tuple, list[str]] = {}
            for name, lv in levels.items():
                groups.setdefault(tuple(lv[o] for o in others), []).append(name)
            for members in groups.values():
                v1 = sorted({levels[n][f1] for n in members}, key=str)
                v2 = sorted({levels[n][f2] for n in members}, key=str)
                if len(v1) != 2 or len(v2) != 2:
                    continue
                cell = {}
                for n in members:
                    cell[(v1.index(levels[n][f1]), v2.index(levels[n][f2]))] = n
                if len(cell) != 4:
                    continue
                if not found:
                    doc.h(2, "Factorial analysis")
                    found = True
                effects = stats.factorial_2x2({k: arms[n].scores[metric] for k, n in cell.items()})
                doc.p(f"{f1} ({v1[0]} → {v1[1]}) × {f2} ({v2[0]} → {v2[1]}) on {metric}, arms "
                      f"{', '.join(cell[k] for k in sorted(cell))}:")
                names = {"main effect 1": f"main effect of {f1}", "main effect 2": f"main effect of {f2}",
                         "interaction": "interaction"}
                doc.table(["effect", "estimate [95% CI]", "supported"],
                          [[names[e.name], signed(e.interval), "yes" if e.interval.excludes_zero() else "no"]
                           for e in effects])
                supported = [names[e.name] for e in effects if e.interval.excludes_zero()]
                doc.p("What explains the differences: " + (", ".join(supported) if supported else
                      "none of the effects is distinguishable from zero with these seeds") + ".")
    if not found:
        doc.h(2, "Factorial analysis")
        doc.p("No four trained arms form a full 2 × 2 of rank, batch split and data size with everything else "
              "equal, so main effects and interactions cannot be separated; pairwise comparisons that change "
              "two factors at once are labelled confounded above.")


def _goldilocks_section(doc: Doc, arms: dict[str, ArmData], metric: str):
    levels = _factor_levels(arms)
    # arms that differ only in rank (a batch split at equal effective batch trains the same objective)
    groups: dict[tuple, list[str]] = {}
    for name, lv in levels.items():
        groups.setdefault((lv["data size"], lv["effective batch"], lv["rest"]), []).append(name)
    doc.h(2, "Rank: is there a Goldilocks zone?")
    best = max(groups.values(), key=lambda g: len({levels[n]["rank"] for n in g}), default=[])
    by_rank: dict[int, str] = {}
    for n in sorted(best, key=lambda n: levels[n]["split"] != "4×4"):
        by_rank.setdefault(levels[n]["rank"], n)
    if len(by_rank) < 3:
        doc.p("Not supported by the data: fewer than three ranks at otherwise equal settings.")
        return
    ordered = [(float(r), arms[by_rank[r]].scores[metric]) for r in sorted(by_rank)]
    claimed, text = stats.goldilocks(ordered)
    doc.p(f"Ranks {', '.join(f'{r} ({by_rank[r]})' for r in sorted(by_rank))} on {metric}: {text}.")


def _decision_section(doc: Doc, study: Study, arms: dict[str, ArmData], specs: list[RunSpec]):
    d = study.decision
    doc.h(2, "Decision")
    answers, rows = {}, []
    for q, spec in d.questions.items():
        a, b = arms.get(spec.compare), arms.get(spec.against)
        c = stats.compare(a.scores[d.metric], b.scores[d.metric], d.metric) if a and b else None
        answers[q] = bool(c and c.delta.low > 0)
        evidence = f"Δ {signed(c.delta)}, p {c.p:.3f}" if c else "no data"
        fd = stats.factors_between(differences(a.config if a else None, b.config if b else None))
        caveat = " (confounded)" if fd.confounded else ""
        rows.append([q, f"{spec.compare} vs {spec.against}{caveat}", evidence, "yes" if answers[q] else "no"])
    doc.table(["question", "comparison", f"{d.metric} evidence", "answer"], rows)
    rule = next((r for r in d.rules if all(answers.get(k) == v for k, v in r.when.items())), None)
    if rule is None:
        doc.p("No rule matches these answers.")
        return
    doc.p(f"Recommended next run: {rule.recommend}")
    if rule.config:
        baseline_spec = next((s for s in specs if s.arm == study.baseline), None)
        cfg = json.loads(json.dumps(baseline_spec.train)) if baseline_spec else {}
        _merge(cfg, rule.config)
        doc.p("Config (baseline arm with these changes): " + json.dumps(rule.config, ensure_ascii=False))
        rate, per_seq = measured_throughput([s for s in specs if s.train])
        if rate and cfg:
            next_spec = RunSpec("next", 0, Path("."), Path("."), cfg | {"max_steps": None}, cfg.get("base", ""), {})
            seconds = estimate_seconds(next_spec, rate, per_seq)
            doc.p(f"Estimated training time on this machine: {seconds / 3600:.1f} h per seed "
                  f"({cfg['data']['size']} examples × {cfg['epochs']:g} epochs at the measured {rate:,.0f} tokens/s"
                  f", {per_seq:.0f} tokens per sequence; the study's runs used base {cfg.get('base')}).")


def _merge(into: dict, changes: dict):
    for k, v in changes.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def _plots(doc: Doc, arms: dict[str, ArmData], primary: str, out_dir: Path, plt):
    doc.h(2, "Plots")
    # loss curves
    fig, ax = plt.subplots(figsize=(8, 4))
    drew = False
    for i, (name, arm) in enumerate(arms.items()):
        for seed, rec in sorted(arm.records.items()):
            if not rec.get("train"):
                continue
            steps = rec["train"]["steps"]
            colour = f"C{i % 10}"
            ax.plot([s["step"] for s in steps], [s["loss"] for s in steps], color=colour, alpha=0.5,
                    label=f"{name} train" if seed == min(arm.records) else None)
            val = rec["train"]["val"]
            if val:
                ax.plot([v["step"] for v in val], [v["loss"] for v in val], "o--", color=colour,
                        label=f"{name} held-out" if seed == min(arm.records) else None)
            drew = True
    if drew:
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss per answer token")
        ax.legend(fontsize=7)
        ax.set_title("Training and held-out loss (same normalisation in every arm)")
        fig.tight_layout()
        fig.savefig(out_dir / "loss_curves.png", dpi=110)
        doc.image(out_dir / "loss_curves.png", "loss curves")
    plt.close(fig)
    # emergence chart: metric means with CIs per arm
    metrics = [m for m in METRICS if any(arm_matrix(a, m) is not None for a in arms.values())]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.2 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        names, means, errs = [], [], [[], []]
        for name, arm in arms.items():
            y = arm_matrix(arm, m)
            if y is None:
                continue
            iv = stats.arm_interval(y)
            names.append(name)
            means.append(iv.mean)
            errs[0].append(max(0.0, iv.mean - iv.low))
            errs[1].append(max(0.0, iv.high - iv.mean))
        ax.bar(range(len(names)), means, yerr=errs, color=[f"C{i % 10}" for i in range(len(names))], capsize=3)
        ax.set_xticks(range(len(names)), names, rotation=60, fontsize=7)
        ax.set_title(m, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("Metric per arm, mean with 95% CI (emergence chart)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "metrics.png", dpi=110)
    doc.image(out_dir / "metrics.png", "metric bars with CIs")
    plt.close(fig)
    # primary metric vs LoRA rank
    points = [(arm.config["lora"]["r"], name, stats.arm_interval(arm_matrix(arm, primary)))
              for name, arm in arms.items() if arm.config and arm_matrix(arm, primary) is not None]
    if points:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for r, name, iv in points:
            ax.errorbar([r], [iv.mean], yerr=[[iv.mean - iv.low], [iv.high - iv.mean]], fmt="o", capsize=3)
            ax.annotate(name, (r, iv.mean), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel("LoRA rank r")
        ax.set_ylabel(primary)
        ax.set_title(f"{primary} vs rank (95% CI)")
        fig.tight_layout()
        fig.savefig(out_dir / "metric_vs_rank.png", dpi=110)
        doc.image(out_dir / "metric_vs_rank.png", "metric vs rank")
        plt.close(fig)
