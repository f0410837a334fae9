"""Export an eval suite as an lm-evaluation-harness task folder, scored by ada-slm's own metrics.

    ada-slm eval export-lm-eval DIR [--suite multilang]
    lm_eval --model hf --model_args pretrained=MODEL_DIR[,peft=ADAPTER_DIR] --include_path DIR \
            --tasks agl_multilang --apply_chat_template

The folder holds <task>.yaml (a generate_until task: greedy, stop at end-of-turn, the same token budget as
`ada-slm eval`), <task>.jsonl (the suite's items) and utils.py, whose `process_results` calls
`ada_slm.run.metrics.score` — so lm-eval reports exactly the numbers `ada-slm eval` computes from the same outputs
(ada-slm must be installed where lm_eval runs). `--apply_chat_template` matches our default (chat template);
without it lm-eval sends the raw prompt, as our `--generation seed` does.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ada_slm.files import atomic_write_text, check_name, write_jsonl
from ada_slm.run.metrics import METRICS
from ada_slm.run.suites import load_suite

UTILS = '''"""lm-evaluation-harness glue for the ada-slm suite {suite!r} (written by `ada-slm eval export-lm-eval`).

Items come from {items} next to this file; each response is scored by ada_slm.run.metrics.score, the function
`ada-slm eval` uses. Metrics that do not apply to an item (certainty_match without an expected certainty,
translation_chrf without a reference, tonight_protocol when the prompt asks for it) are left out for that item,
so their means are over the items they apply to, as in ada-slm's own summary.
"""

import json
from pathlib import Path

from ada_slm.run.metrics import score

ITEMS = Path(__file__).with_name({items!r})


def load_items(**kwargs):
    import datasets

    rows = [json.loads(line) for line in ITEMS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {{"test": datasets.Dataset.from_list(rows)}}


def process_results(doc, results):
    response = results[0].strip()  # ada-slm strips the decoded answer the same way
    return {{name: value for name, value in score(response, doc).items() if value is not None}}
'''


class _FunctionTag(str):
    """A YAML scalar written as `!function utils.name` (lm-eval's tag for a Python callable)."""


class _TaskDumper(yaml.SafeDumper):
    """SafeDumper that knows `!function` (its own subclass, so PyYAML's global dumpers stay untouched)."""


_TaskDumper.add_representer(_FunctionTag, lambda dumper, v: dumper.represent_scalar("!function", str(v)))


def export(
    out_dir: str | Path, suite_name: str = "multilang", max_new_tokens: int = 48, task: str | None = None
) -> Path:
    """Write the task folder; returns the YAML path."""
    suite, _ = load_suite(suite_name)
    task = check_name(task, "--task") if task else check_name(f"agl_{suite.name}", "task name agl_<suite name>")
    out = Path(out_dir)  # the task names two files in it: it must not lead out of it
    out.mkdir(parents=True, exist_ok=True)
    items_file = f"{task}.jsonl"
    write_jsonl(out / items_file, [item.model_dump() for item in suite.items])
    atomic_write_text(out / "utils.py", UTILS.format(suite=suite.name, items=items_file))
    config = {
        "task": task,
        "custom_dataset": _FunctionTag("utils.load_items"),
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{prompt}}",
        "doc_to_target": "",
        "process_results": _FunctionTag("utils.process_results"),
        # greedy, like `ada-slm eval`; lm-eval adds the model's end-of-turn token to `until` itself
        "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": max_new_tokens},
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in METRICS],
        "metadata": {"version": 1.0, "source": f"ada-slm suite {suite.name} ({len(suite.items)} items)"},
    }
    header = (
        f"# lm-evaluation-harness task for the ada-slm suite {suite.name!r}; written by "
        f"`ada-slm eval export-lm-eval`.\n# lm_eval --model hf --model_args pretrained=MODEL[,peft=ADAPTER] "
        f"--include_path {out} --tasks {task} --apply_chat_template\n"
    )
    path = out / f"{task}.yaml"
    atomic_write_text(path, header + yaml.dump(config, Dumper=_TaskDumper, sort_keys=False, allow_unicode=True))
    return path
