"""Sizes a careless or hostile input asks for are refused in one line before anything is built: seeds, arms and
runs per study, data size, generation budget."""

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ada_slm.agl import MAX_CORPUS_SIZE
from ada_slm.agl.builder import build_corpus
from ada_slm.errors import UserError
from ada_slm.run.config import build_config
from ada_slm.run.suites import MAX_NEW_TOKENS
from ada_slm.study.spec import MAX_ARMS, MAX_RUNS, MAX_SEEDS, expand, load_study

STUDY = "name: s\nbaseline: a0\ndefaults: {base: tiny-lfm2}\n"


def _study(tmp_path, arms: int, seeds: list[int], extra: str = ""):
    path = tmp_path / "s.yaml"
    path.write_text(
        STUDY + f"seeds: {json.dumps(seeds)}\narms:\n" + "".join(f"  a{i}: {{}}\n" for i in range(arms)) + extra
    )
    return path


def peak_kib() -> int:
    """This process's peak resident memory in KiB: VmHWM on Linux. Not ru_maxrss: it is carried over from the parent
    across fork and exec, so a child of a pytest process that has loaded models would report the parent's peak."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_seeds_arms_and_runs_are_capped_with_one_line(tmp_path):
    with pytest.raises(UserError, match=f"{MAX_SEEDS + 1} seeds: at most {MAX_SEEDS}"):
        load_study(_study(tmp_path, 2, list(range(MAX_SEEDS + 1))))
    with pytest.raises(UserError, match=f"{MAX_ARMS + 1} arms: at most {MAX_ARMS}"):
        load_study(_study(tmp_path, MAX_ARMS + 1, [0]))
    path = _study(tmp_path, 20, list(range(MAX_RUNS // 20 + 1)))
    with pytest.raises(UserError, match=f"runs: at most {MAX_RUNS}"):
        expand(load_study(path), str(path))
    with pytest.raises(UserError, match="seed 7 is listed twice"):
        load_study(_study(tmp_path, 2, [1, 7, 3, 7]))


@pytest.mark.slow
def test_a_huge_study_file_is_refused_in_bounded_time_and_memory(tmp_path):
    """1,000 arms × 1,000 seeds in a small YAML: refused before the million runs are expanded (it grew past 2 GB
    in `study plan` before the cap), with peak memory measured in a child process."""
    path = _study(tmp_path, 1000, list(range(1000)))
    code = (
        inspect.getsource(peak_kib) + "import sys\nfrom ada_slm.app.cli import main\n"
        f"sys.argv = ['ada-slm', 'study', 'plan', {str(path)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "print(peak_kib(), code)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    rss_kb, exit_code = p.stdout.split()[-2:]
    assert exit_code not in ("0", "None") and f"at most {MAX_RUNS}" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert int(rss_kb) < 1_000_000, rss_kb  # KiB: under 1 GB (the expansion alone took > 2 GB)


def test_generation_and_data_sizes_are_capped():
    try:  # restart this process's peak count (Linux), so that the peaks of tests run before this one do not count
        Path("/proc/self/clear_refs").write_text("5")
        start = peak_kib()
    except OSError:
        start = 0
    with pytest.raises(UserError, match=f"at most {MAX_CORPUS_SIZE:,} examples"):
        build_corpus(10**12)
    with pytest.raises(UserError, match="data.size: Input should be less than or equal to"):
        build_config({"data": {"size": 10**12}})
    from ada_slm.study.spec import EvalSettings

    with pytest.raises(ValueError, match="less than or equal to 4096"):
        EvalSettings(max_new_tokens=10**9)
    assert MAX_NEW_TOKENS == 4096
    assert peak_kib() - start < 4_000_000  # KiB: nothing was built


def test_a_typo_in_a_rule_config_is_refused_when_the_study_loads(tmp_path):
    path = _study(
        tmp_path,
        2,
        [0, 1],
        "decision:\n  questions: {rank: {compare: a1, against: a0}}\n  rules:\n"
        "    - {when: {rank: true}, recommend: more, config: {lora: {rr: 32}}}\n",
    )
    with pytest.raises(UserError, match=r"decision.rules.0.config: unknown key 'lora.rr'"):
        load_study(path)
