"""`ada-slm study serve`: a live view of one study in the browser, read from its results folder.

    GET /                        the page (web/index.html, app.js, style.css — shipped in the package, no CDN)
    GET /api/state               the arm × seed grid: each run's state, step, ETA, failure reason; runner active?
    GET /api/curves              train and held-out loss of every run that has trained
    GET /api/analysis            report.md's numbers and strings, from one analysis.analyse: per-arm metrics with
                                 CIs, Δ against the baseline, the decision, success criteria, designs, power,
                                 adaptive rounds
    GET /api/run/{arm}/{seed}    one run: its config, its record, its eval items with per-item metrics

The page polls /api/state every 2 s and fetches curves, analysis or a run page only when the files behind them
changed. The answers come from study_view.StudyView (or serve_compare.CompareView, the same endpoints); this module is
the HTTP side: the Starlette app, choosing the study and its scale, listening and serving. The server runs at a lower
CPU priority than the runner.
"""

from __future__ import annotations

import json
import math
import os
import socket
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ada_slm.app.study_view import MAX_READ_BYTES, SPEC, StudyView
from ada_slm.errors import UserError
from ada_slm.files import read_json
from ada_slm.study.spec import RunSpec, Study, expand

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


# ------------------------------------------------------------------------------------------ the app
def _finite(obj: Any) -> Any:
    """NaN and ±inf as null: JSON has no NaN, and the browser's JSON.parse rejects Python's."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def render_json(content) -> bytes:
    """An API answer's bytes: NaN as null, and only ASCII (a string that is no text, such as a lone surrogate
    read from some file, is escaped instead of failing the whole answer)."""
    return json.dumps(_finite(content), ensure_ascii=True, allow_nan=False).encode("ascii")


def web_dir() -> Path:
    return Path(str(resources.files("ada_slm.app") / "web"))


def create_app(view, allowed_hosts: list[str] | None = None):
    """The Starlette app over a StudyView (or serve_compare.CompareView: the same endpoints). `allowed_hosts`
    guards a loopback server against DNS rebinding (None: any host)."""

    class Json(JSONResponse):
        def render(self, content) -> bytes:
            return render_json(content)

    def answer(content, status: int = 200):
        return Json(content, status_code=status, headers={"Cache-Control": "no-store"})

    def run_page(request):
        try:
            seed = int(request.path_params["seed"])
        except ValueError:
            seed = None
        detail = view.run(request.path_params["arm"], seed) if seed is not None else None
        if detail is None:
            return answer(
                {"error": f"no run {request.path_params['arm']}/seed{request.path_params['seed']} in {view.label}"}, 404
            )
        return answer(detail)

    web = web_dir()
    routes = [
        Route("/", lambda request: FileResponse(web / "index.html", headers={"Cache-Control": "no-store"})),
        Route("/api/state", lambda request: answer(view.state())),
        Route("/api/curves", lambda request: answer(view.curves())),
        Route("/api/analysis", lambda request: answer(view.analysis())),
        Route("/api/run/{arm}/{seed}", run_page),
        Mount("/static", StaticFiles(directory=web), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware)


# ------------------------------------------------------------------------------------------ choosing the study
def default_study(results_root: str | Path) -> str:
    """With no STUDY argument: the one study that has a folder under the results root."""
    root = Path(results_root)
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if len(names) != 1:
        found = f"found {', '.join(names)}" if names else "none yet"
        raise UserError(
            f"{root}: name the study to show (a study file, or a shipped study such as phase14d); "
            f"study folders under {root}: {found}"
        )
    return names[0]


def infer_scale(study: Study, source: str, results_root: str | Path, exports_root: str | Path) -> str | None:
    """The scale preset whose runs are on disk (the spec.json that `study run` writes), so that a bare
    `study serve phase14d` shows what `make demo` (--scale quick) runs. None (as written) when no run has started."""
    on_disk = {}
    for path in (Path(results_root) / study.name).glob(f"*/seed*/{SPEC}"):
        try:
            on_disk[f"{path.parent.parent.name}/{path.parent.name}"] = read_json(
                path, MAX_READ_BYTES, [Path(results_root)]
            )
        except UserError:  # a spec that cannot be read says nothing about the scale
            continue

    def strip(train: dict | None) -> dict | None:
        return {k: v for k, v in train.items() if k not in ("out_dir", "export_dir")} if train else None

    best, best_matches = None, 0
    for scale in [None, *study.scale]:
        specs = expand(study, source, scale, results_root=results_root, exports_root=exports_root)
        matches = sum(
            1
            for s in specs
            if s.key in on_disk
            and isinstance(on_disk[s.key], dict)
            and strip(on_disk[s.key].get("train"))
            == strip(s.train.model_dump(mode="json") if s.train is not None else None)
            and on_disk[s.key].get("eval") == s.eval
        )
        if matches > best_matches:
            best, best_matches = scale, matches
    return best


# ------------------------------------------------------------------------------------------ serving
def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as e:  # OverflowError: a port outside 0-65535
        sock.close()
        raise UserError(
            f"--host {host} --port {port}: cannot listen there ({getattr(e, 'strerror', None) or e}); "
            "choose another --port"
        ) from None
    sock.listen(128)  # from here on a request waits in the backlog until the server accepts it
    return sock


def serve(
    study: Study,
    specs: list[RunSpec],
    scale: str | None,
    results_root: str | Path,
    host: str,
    port: int,
    announce=print,
) -> None:
    """Serve the page until Ctrl-C. `--port 0` picks a free port; the URL is announced either way."""
    sock = listen(host, port)
    view = StudyView(study, specs, scale, results_root)
    if hasattr(os, "nice"):
        os.nice(10)  # the runner's training gets the CPU first
    serve_view(view, sock, f"study {study.name} (scale {scale or 'as written'}, results {view.root})", host, announce)


def serve_view(view, sock: socket.socket, what: str, host: str, announce=print) -> None:
    """Serve `view` (a StudyView or serve_compare.CompareView) on the listening `sock` until Ctrl-C: the URL is
    announced; on a loopback address only requests naming a loopback host are answered."""
    loopback = host in LOOPBACK or host.startswith("127.")
    app = create_app(view, allowed_hosts=[host, "127.0.0.1", "localhost", "[::1]"] if loopback else None)
    bound = sock.getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host
    announce(f"{what}: http://{url_host}:{bound}/  — Ctrl-C stops")
    if not loopback:
        announce(f"note: listening on {host}, so anyone who can reach this machine can read these results")
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")).run(sockets=[sock])
