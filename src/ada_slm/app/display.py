"""Drawing a running study for a person: a live table on a terminal, one line per finished run elsewhere.

The runner (executors.run_study) only reports state changes; this is the CLI's view of them.
"""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.table import Table

from ada_slm.study.spec import RunSpec

COLOURS = {"done": "green", "running": "yellow", "failed": "red", "corrupt": "red"}


class StudyDisplay:
    """Use as a context manager around `run_study(..., events=display)`."""

    def __init__(self, title: str, specs: list[RunSpec], states: dict[str, str], console: Console, jobs: int = 1):
        self.title, self.specs, self.states, self.console = title, specs, dict(states), console
        self.jobs = jobs  # runs at once: the ETA divides the runs left between them
        self.durations: list[float] = []
        self.reasons: dict[str, str] = {}
        self.todo = sum(1 for v in self.states.values() if v != "done")
        self.finished = 0
        self.live: Live | None = None

    def __enter__(self):
        if self.console.is_terminal:
            self.live = Live(self.table(), console=self.console, refresh_per_second=2, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.live.__exit__(*exc)
        return False

    def table(self) -> Table:
        t = Table(title=f"study {self.title}")
        for col in ("run", "state"):
            t.add_column(col)
        for s in self.specs:
            state = self.states[s.key]
            why = f" ({self.reasons[s.key]})" if s.key in self.reasons else ""
            t.add_row(s.key, f"[{COLOURS.get(state, 'white')}]{state}[/]{why}")
        left = sum(1 for v in self.states.values() if v in ("pending", "running", "corrupt"))
        per_run = sum(self.durations) / len(self.durations) if self.durations else None
        eta = f"{left * per_run / self.jobs / 60:.1f} min" if per_run and left else "—"
        counts = {
            k: sum(1 for v in self.states.values() if v == k)
            for k in ("done", "running", "failed", "corrupt", "pending")
        }
        t.caption = (
            " · ".join(f"{k} {v}" for k, v in counts.items() if v or k != "corrupt")
            + f" · ETA {eta}"
            + (f" · {self.jobs} runs at once" if self.jobs > 1 else "")
        )
        return t

    def changed(self, spec: RunSpec, state: str, detail: str, seconds: float | None) -> None:
        self.states[spec.key] = state
        if detail:
            self.reasons[spec.key] = detail if len(detail) <= 120 else detail[:119] + "…"
        if seconds is not None:
            self.durations.append(seconds)
        if self.live:
            self.live.update(self.table())
        elif seconds is not None:  # no terminal (CI logs, pipes): one line per finished run
            self.finished += 1
            why = f": {self.reasons[spec.key]}" if spec.key in self.reasons else ""
            self.console.print(
                f"[{self.finished}/{self.todo}] {spec.key} {state} in {seconds:.0f}s{why}",
                highlight=False,
                markup=False,
            )
        elif state == "running" and self.jobs > 1:  # runs side by side: say which started, so a log shows them
            running = [s.key for s in self.specs if self.states[s.key] == "running"]
            self.console.print(f"started {spec.key} (running: {', '.join(running)})", highlight=False, markup=False)
