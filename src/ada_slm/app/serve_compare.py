"""`ada-slm compare … --serve`: the live page of `study serve` on a compare result.

A comparison is computed once, from files another tool wrote, so nothing here is live: the view answers the same
endpoints as study_view.StudyView from one precomputed CompareResult — /api/analysis with the compare report's own
cells (its summary table, report.comparison_table per arm, the items and power sections as compare_report.render
writes them), /api/state with the imported runs as compare_report.runs_table lists them and none of a study's
run cells, progress or curves (kind 'compare': the page leaves those sections out). Nothing is read after start.
"""

from __future__ import annotations

from typing import Any

from ada_slm.analysis.compare import report as compare_report
from ada_slm.analysis.compare.analysis import CompareResult
from ada_slm.analysis.report import doc as report_doc
from ada_slm.analysis.report import writer as report
from ada_slm.app.study_view import COMPARISON_KEYS, digest, interval_cells

# Keys for the cells of the compare report's summary table, in its column order (the headers come from the report).
SUMMARY_KEYS = ("arm", "runs", "metric", "seed_item_sd", "vs_baseline")
SECTIONS = ("Items", "Power")  # the compare report's sections the page shows as the report renders them


def _sections(doc: report_doc.Doc, titles: tuple[str, ...]) -> list[list]:
    """The blocks of the report's level-2 sections named `titles`, each from its heading to the next one."""
    out, keep = [], False
    for block in doc.blocks:
        if block[0] == "h" and block[1] <= 2:
            keep = block[1] == 2 and block[2] in titles
        if keep and block[0] != "img":
            out.append(list(block))
    return out


def analysis_json(result: CompareResult) -> dict:
    """/api/analysis of a comparison: the shape study_view._analysis_json gives a study, its cells made by the compare
    report's own helpers, so the page shows report.md's strings. No decision and no criteria: a comparison has
    neither."""
    a, baseline = result.analysis, result.spec.baseline_arm
    header, cells = compare_report.summary_table(result)
    arms = [
        {
            "arm": name,
            "baseline": name == baseline,
            "n_complete": arm.n_complete,
            "cells": dict(zip(SUMMARY_KEYS, row, strict=True)),
            "metrics": {m: interval_cells(iv) for m, iv in arm.intervals.items()},
        }
        for (name, arm), row in zip(a.arms.items(), cells, strict=True)
    ]
    comparisons: dict[str, dict[str, Any]] = {}
    for name in a.arms:
        if name == baseline:
            continue
        comp = a.comparisons.get(name)
        if comp is None or not comp.comparisons:
            comparisons[name] = {"notes": ["Nothing to compare."], "rows": []}
            continue
        head, rows = report.comparison_table(a, comp)
        comparisons[name] = {
            "header": head,
            "notes": [compare_report.equivalence_note(comp)] if comp.equivalence else [],
            "rows": [
                {
                    "metric": m,
                    "cells": dict(zip(COMPARISON_KEYS, row, strict=True)),
                    "delta": interval_cells(c.delta),
                    "supported": c.supported,
                }
                for (m, c), row in zip(comp.comparisons.items(), rows, strict=True)
            ],
        }
    metrics = list(dict.fromkeys(m for arm in a.arms.values() for m in arm.intervals))
    return {
        "available": True,
        "kind": "compare",
        "metric": a.primary,
        "baseline": baseline,
        "metrics": metrics,
        "summary_header": [[k, h] for k, h in zip(SUMMARY_KEYS, header, strict=True)],
        "arms": arms,
        "comparisons": comparisons,
        "decision": None,
        "criteria": None,
        "blocks": _sections(compare_report.render(result), SECTIONS),
        "errors": [],
    }


class CompareView:
    """What the endpoints answer for one comparison, computed once."""

    def __init__(self, result: CompareResult, report_dir: str | None = None):
        spec = result.spec
        self.label = f"comparison {spec.name}"  # what a 404 names
        self._analysis = analysis_json(result)
        self._analysis["version"] = digest([self._analysis])
        head, rows = compare_report.runs_table(result)
        self._state = {
            "kind": "compare",
            "study": spec.name,
            "description": spec.description.strip(),
            "scale": None,
            "results": report_dir or "",
            "baseline": spec.baseline_arm,
            "arms": list(result.analysis.arms),
            "seeds": [],
            "runs": [],
            "counts": {},
            "runner": None,
            "compute_left_s": None,
            "notes": [],
            "provenance": compare_report.provenance(result),
            "imported": {"header": head, "rows": rows},
            "versions": {"curves": None, "analysis": self._analysis["version"]},
        }

    def state(self) -> dict:
        return self._state

    def curves(self) -> dict:
        return {"runs": {}}

    def analysis(self) -> dict:
        return self._analysis

    def run(self, arm: str, seed: int) -> None:
        return None  # imported runs have no run page
