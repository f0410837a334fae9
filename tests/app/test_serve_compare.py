"""`ada-slm compare … --serve`: the page of `study serve` on a comparison of plain tables, its cells the compare
report's, on a loopback port guarded like `study serve`'s."""

import json
import os
import re
import subprocess

from ada_slm.analysis.compare.analysis import CompareSpec, compare
from ada_slm.app.serve_compare import CompareView
from tests.analysis.test_compare import crossed_rows, write_csv
from tests.app.test_serve import _get, md_table
from tests.shared import CLI


def start_compare_server(*args) -> tuple[subprocess.Popen, str]:
    """`ada-slm compare ARGS --serve --port 0` in its own process; returns it and the URL it announces (after the
    summary it prints)."""
    proc = subprocess.Popen(
        CLI + ["compare", *map(str, args), "--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if match:
            return proc, match.group(0)
    proc.kill()
    raise AssertionError(f"no URL announced: {''.join(seen)[-2000:]} {proc.stderr.read()[-2000:]}")


def test_compare_serve_shows_the_compare_reports_cells(tmp_path):
    rows = crossed_rows({"a": 0.0, "same": 0.0, "better": 0.6})
    rows = [r for r in rows if not (r["run"] == "same-1" and r["item"] == "q7")]  # one item one run lacks
    table = write_csv(tmp_path / "runs.csv", rows)
    proc, url = start_compare_server(
        table, "--baseline", "a", "--equivalence-margin", "0.3", "--out", tmp_path / "report"
    )
    try:
        status, body = _get(url + "api/analysis")
        a = json.loads(body)
        st = json.loads(_get(url + "api/state")[1])
        page = _get(url)[1]
        assert _get(url + "api/run/a/0")[0] == 404
        assert _get(url + "api/analysis", host="attacker.example")[0] == 400  # DNS rebinding guard on loopback
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    md = (tmp_path / "report" / "report.md").read_text()
    assert status == 200 and a["available"] and a["kind"] == "compare" and a["errors"] == []
    for arm in ("same", "better"):
        comp, table_md = a["comparisons"][arm], md_table(md, f"### {arm} vs a")
        assert comp["header"] == list(table_md[0])
        assert [list(r["cells"].values()) for r in comp["rows"]] == [list(r.values()) for r in table_md]
        assert comp["notes"] and all(f"\n{n}\n" in md for n in comp["notes"])  # the equivalence line
    assert [r["supported"] for r in a["comparisons"]["better"]["rows"]] == [True]
    assert [r["supported"] for r in a["comparisons"]["same"]["rows"]] == [False]
    summary = md_table(md, "## Summary")
    assert [title for _, title in a["summary_header"]] == list(summary[0])
    assert [[r["cells"][k] for k, _ in a["summary_header"]] for r in a["arms"]] == [list(r.values()) for r in summary]
    # the items and power sections, each block as report.md has it
    assert [b[2] for b in a["blocks"] if b[0] == "h"] == ["Items", "Power"]
    assert any("same-1 lacks 1 (q7)" in b[1] for b in a["blocks"] if b[0] == "p")
    from ada_slm.analysis.report import doc as report_doc

    for block in a["blocks"]:
        doc = report_doc.Doc()
        doc.blocks = [tuple(block)]
        assert doc.markdown() in md, block
    # the runs are the compare spec's; a study's run cells, progress and curves are absent
    assert st["kind"] == "compare" and st["runs"] == [] and st["arms"] == ["a", "same", "better"]
    assert [row[:2] for row in st["imported"]["rows"]] == [
        [arm, f"{arm}-{k}"] for arm in ("a", "same", "better") for k in range(3)
    ]
    assert st["versions"]["analysis"] == a["version"]
    assert "/static/app.js" in page


def test_compare_view_without_a_report_folder(tmp_path):
    table = write_csv(tmp_path / "t.csv", crossed_rows({"a": 0.0, "b": 0.0}, n_items=12, seed=1))
    view = CompareView(compare(CompareSpec(arms={"a": [str(table)], "b": [str(table)]})))
    assert view.state()["results"] == "" and view.curves() == {"runs": {}} and view.run("a", 0) is None
    a = view.analysis()
    assert a["decision"] is None and a["criteria"] is None and a["comparisons"]["b"]["notes"] == []
    assert a["metrics"] == ["score"] and a["arms"][0]["metrics"]["score"]["text"]


def test_compare_serve_on_a_port_in_use_is_a_one_line_error(tmp_path):
    import socket

    from tests.analysis.test_compare import one_line_error, run_compare

    table = write_csv(tmp_path / "t.csv", crossed_rows({"a": 0.0, "b": 0.0}, n_items=12, seed=1))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        p = run_compare(table, "--serve", "--port", port, "--out", tmp_path / "report")
    one_line_error(p, f"--host 127.0.0.1 --port {port}: cannot listen there")
    assert not (tmp_path / "report").exists()  # refused before anything is written
