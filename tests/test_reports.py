"""The notebook pipeline runner: run ids, index pages, failures, links."""

import datetime as dt
import html
import json
import re
from pathlib import Path

import jupytext
import nbformat
import pytest

from semlab import reports


def _notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('PROFILE = "cpu"\nRUN_DIR = ""\nX = 1')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["jupytext"] = {"notebook_metadata_filter": "semlab,kernelspec"}
    jupytext.write(nb, str(path), fmt="py:percent")


FAIL_BODY = 'print("before the failure")\nraise ValueError("boom <b>&amp; bad</b>")'
OK_BODY = """
import json, os
from pathlib import Path
out = Path(RUN_DIR) / "01_write_metrics"
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(json.dumps({"psnr": 31.25, "nested": {"kid": 0.0123}, "profile": PROFILE, "x": X}))
print("wrote metrics")
"""


def _hrefs(page: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', page)


# ------------------------------------------------------------------------ fast tests


def test_run_id_format():
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert reports.make_run_id("cpu", now=now, git_hash="abc1234") == "20260102T030405Z-cpu-abc1234"
    assert reports.make_run_id("smoke", now=now) == "20260102T030405Z-smoke-nogit"


def test_git_short_hash(tmp_path):
    git = tmp_path / "repo" / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    assert reports.git_short_hash(tmp_path / "repo") is None  # no commit yet
    sha = "0123456789abcdef0123456789abcdef01234567"
    (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{sha} refs/heads/main\n")
    assert reports.git_short_hash(tmp_path / "repo") == "0123456"
    (git / "refs" / "heads" / "main").write_text("f" * 40 + "\n")
    assert reports.git_short_hash(tmp_path / "repo") == "fffffff"
    (git / "HEAD").write_text(sha + "\n")  # detached
    assert reports.git_short_hash(tmp_path / "repo") == "0123456"


def test_list_notebooks_order_and_only(tmp_path):
    for name in ["10_train_model", "00_explore_data", "01_make_data", "notes", "2_bad"]:
        (tmp_path / f"{name}.py").write_text("{}")
        (tmp_path / f"{name}.ipynb").write_text("{}")  # a twin is never listed
    names = [p.stem for p in reports.list_notebooks(tmp_path)]
    assert names == ["00_explore_data", "01_make_data", "10_train_model"]
    assert [p.stem for p in reports.list_notebooks(tmp_path, only="0")] == ["00_explore_data", "01_make_data"]
    assert [p.stem for p in reports.list_notebooks(tmp_path, only=["10_train_model.ipynb", "00"])] == [
        "00_explore_data", "10_train_model"]
    assert [p.stem for p in reports.list_notebooks(tmp_path, only="*_explore_*")] == ["00_explore_data"]
    with pytest.raises(ValueError, match="00_explore_data"):
        reports.list_notebooks(tmp_path, only="99")


def test_write_text_atomic_leaves_no_temp(tmp_path):
    p = reports.write_text_atomic(tmp_path / "sub" / "a.html", "one")
    reports.write_text_atomic(p, "two")
    assert p.read_text() == "two"
    assert [q.name for q in p.parent.iterdir()] == ["a.html"]


def test_render_run_index_escapes_and_tables():
    meta = {
        "run_id": "r1", "profile": "smoke", "git": "nogit", "started": "s", "finished": None, "status": "failed",
        "params": {}, "notebooks": ["00_a", "01_b", "02_c"],
        "steps": [
            {"name": "00_a", "status": "failed", "seconds": 1.0, "html": "00_a.html", "ipynb": "00_a.ipynb",
             "metrics": None, "error": {"ename": "KeyError", "evalue": "<x>", "traceback": "line <1> & 2", "cell": "3"}},
            {"name": "01_b", "status": "ok", "seconds": 2.5, "html": "01_b.html", "ipynb": None,
             "metrics": {"a": {"b": 1.23456789}, "n": 3}, "error": None},
        ],
    }
    page = reports.render_run_index(meta)
    assert "<pre>line &lt;1&gt; &amp; 2</pre>" in page
    assert "KeyError: &lt;x&gt;" in page
    assert "a.b" in page and "1.235" in page
    assert "pending" in page  # 02_c not run yet
    assert set(_hrefs(page)) == {"../index.html", "00_a.html", "00_a.ipynb", "01_b.html"}
    assert reports.flatten_metrics({"a": {"b": 1}, "c": [1, 2]}) == [("a.b", 1), ("c", [1, 2])]


def test_reports_index_without_runs(tmp_path):
    page = reports.write_reports_index(tmp_path).read_text()
    assert "No runs yet" in page


def test_empty_notebooks_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        reports.run_pipeline("smoke", out_root=tmp_path / "r", notebooks_dir=tmp_path)


# ------------------------------------------------------------------- notebook runs


@pytest.mark.slow
def test_run_pipeline_failure_does_not_hide_others(tmp_path, capsys):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    _notebook(nbdir / "00_raise_error.py", FAIL_BODY)
    _notebook(nbdir / "01_write_metrics.py", OK_BODY)
    out_root = tmp_path / "reports"

    res = reports.run_pipeline("smoke", out_root=out_root, notebooks_dir=nbdir, params={"X": 7, "RUN_DIR": "ignored"})

    assert not res.ok
    assert re.fullmatch(r"\d{8}T\d{6}Z-smoke-([0-9a-f]{7}|nogit)", res.run_dir.name)
    assert [s["name"] for s in res.steps] == ["00_raise_error", "01_write_metrics"]
    failed, ok = res.steps
    assert failed["status"] == "failed" and ok["status"] == "ok"
    assert failed["error"]["ename"] == "ValueError"
    assert "boom" in failed["error"]["evalue"]
    assert "ValueError" in failed["error"]["traceback"] and "\x1b[" not in failed["error"]["traceback"]
    # the partial executed notebook is still converted, with the output printed before the error
    assert failed["html"] == "00_raise_error.html"
    assert "before the failure" in (res.run_dir / failed["html"]).read_text()
    # the following notebook ran, got its parameters and wrote metrics
    assert (res.run_dir / "01_write_metrics.html").is_file()
    assert ok["metrics"] == {"psnr": 31.25, "nested": {"kid": 0.0123}, "profile": "smoke", "x": 7}
    assert all(isinstance(s["seconds"], float) for s in res.steps)
    # the dashboard's card, recorded in run.json: an older metrics.json shape shows its first numbers
    assert ok["headline"] == [{"key": "psnr", "value": 31.25}, {"key": "nested.kid", "value": 0.0123},
                              {"key": "x", "value": 7.0}]
    assert ok["data"] is None and ok["figure"] is None and ok["question"] == ""

    page = (res.run_dir / "index.html").read_text()
    assert "smoke" in page and res.run_dir.name in page
    assert html.escape('boom <b>&amp; bad</b>') in page  # escaped, in the failure heading and traceback
    assert "ValueError" in page.split("<pre>", 1)[1].split("</pre>", 1)[0]
    assert "nested.kid" in page and "31.25" in page
    for href in _hrefs(page):
        assert (res.run_dir / href).resolve().is_file(), href

    top = (out_root / "index.html").read_text()
    assert f'href="{res.run_dir.name}/index.html"' in top
    assert "failed" in top
    for href in _hrefs(top):
        assert (out_root / href).is_file(), href
    meta = json.loads((res.run_dir / "run.json").read_text())
    assert meta["status"] == "failed" and meta["finished"]
    assert not list(res.run_dir.glob(".*"))  # no temp or partial files left

    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("00_raise_error") and "failed" in line for line in lines)
    assert any(line.startswith("01_write_metrics") and " ok " in line for line in lines)


@pytest.mark.slow
def test_run_pipeline_only_and_newest_first(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    _notebook(nbdir / "00_raise_error.py", FAIL_BODY)
    _notebook(nbdir / "01_write_metrics.py", OK_BODY)
    out_root = tmp_path / "reports"
    first = reports.run_pipeline("smoke", only="01", out_root=out_root, notebooks_dir=nbdir)
    second = reports.run_pipeline("smoke", only=["01_write_metrics"], out_root=out_root, notebooks_dir=nbdir)
    assert first.ok and second.ok and len(first.steps) == 1
    assert first.run_dir != second.run_dir  # same second: a suffix keeps ids unique
    top = (out_root / "index.html").read_text()
    assert top.index(f'href="{second.run_dir.name}/index.html"') < top.index(f'href="{first.run_dir.name}/index.html"')


# --------------------------------------------------- dependencies, manifest, --from, params

PUBLISH_BODY = """
from semlab.runs import publish_outputs
publish_outputs(RUN_DIR, "10_make", dataset=f"/data/made-{X}")
"""
READ_BODY = """
import json
from pathlib import Path
from semlab.runs import run_outputs
got = run_outputs(RUN_DIR)["10_make"]["dataset"]
out = Path(RUN_DIR) / "20_use"
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(json.dumps({"dataset": got, "x": X}))
"""


def _with_deps(path: Path, body: str, depends_on=(), question=""):
    _notebook(path, body)
    nb = jupytext.read(str(path))
    nb.metadata["semlab"] = {"depends_on": list(depends_on), "question": question}
    jupytext.write(nb, str(path), fmt="py:percent")


@pytest.mark.slow
def test_manifest_passes_outputs_and_from_reuses_the_latest_run(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _with_deps(nbs / "10_make.py", PUBLISH_BODY)
    _with_deps(nbs / "20_use.py", READ_BODY, depends_on=["10"])
    out = tmp_path / "reports"
    first = reports.run_pipeline("smoke", out_root=out, notebooks_dir=nbs, params={"10": {"X": 7}})
    assert first.ok
    assert json.loads((first.run_dir / "20_use" / "metrics.json").read_text()) == {"dataset": "/data/made-7", "x": 1}
    man = json.loads((first.run_dir / "manifest.json").read_text())
    assert man["outputs"]["10_make"] == {"dataset": "/data/made-7"} and man["inherited_from"] is None
    # --from 20: notebook 10 is not re-run; its outputs come from the first run
    second = reports.run_pipeline("smoke", out_root=out, notebooks_dir=nbs, start="20", params={"X": 3})
    assert second.ok and [s["name"] for s in second.steps] == ["20_use"]
    assert json.loads((second.run_dir / "manifest.json").read_text())["inherited_from"] == first.run_id
    assert json.loads((second.run_dir / "20_use" / "metrics.json").read_text()) == {"dataset": "/data/made-7", "x": 3}


@pytest.mark.slow
def test_a_failed_dependency_skips_its_dependents_only(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _with_deps(nbs / "10_make.py", FAIL_BODY)
    _with_deps(nbs / "20_use.py", READ_BODY, depends_on=["10_make"])
    _with_deps(nbs / "30_other.py", OK_BODY.replace("01_write_metrics", "30_other"), question="Does <it> work?")
    res = reports.run_pipeline("smoke", out_root=tmp_path / "reports", notebooks_dir=nbs)
    assert not res.ok
    assert [(s["name"], s["status"]) for s in res.steps] == [("10_make", "failed"), ("20_use", "skipped"),
                                                           ("30_other", "ok")]
    page = (res.run_dir / "index.html").read_text()
    assert "depends on 10_make" in page and "boom" in page
    recorded = json.loads((res.run_dir / "run.json").read_text())["steps"]
    assert [s["question"] for s in recorded] == ["", "", "Does <it> work?"]
    assert recorded[2]["headline"][0] == {"key": "psnr", "value": 31.25}
    assert '<p class="question">Does &lt;it&gt; work?</p>' in page
    assert (res.run_dir / "30_other.html").is_file()


def test_bad_notebook_parameters_fail_before_running(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "10_make.py", "print(1)")
    with pytest.raises(ValueError, match="has no parameter"):
        reports.run_pipeline("smoke", out_root=tmp_path / "reports", notebooks_dir=nbs, params={"10": {"NOPE": 1}})
    assert not (tmp_path / "reports").exists()
    # a global entry another notebook may use is simply not passed to this one
    p = reports.notebook_params(nbs / "10_make.py", {"PROFILE": "smoke", "RUN_DIR": "/r"}, {"NOPE": 1, "X": 5})
    assert p == {"PROFILE": "smoke", "RUN_DIR": "/r", "X": 5}


def test_html_reports_are_self_contained_with_folded_code(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), nbformat.v4.new_code_cell("1 + 1")]
    nb.cells[1].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp_path / "t.ipynb"
    nbformat.write(nb, str(src))
    reports.notebook_to_html(src, tmp_path / "t.html")
    page = (tmp_path / "t.html").read_text()
    assert '<details class="semlab-code">' in page and "run index" in page
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', page), "reports must not load anything from the web"


@pytest.mark.slow
def test_cli_run_exits_non_zero_on_failure_and_keeps_other_reports(tmp_path, capsys):
    from semlab import cli

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "10_fails.py", FAIL_BODY)
    _notebook(nbs / "20_works.py", OK_BODY)
    rc = cli.main(["run", "--profile", "smoke", "--notebooks", str(nbs), "--out", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert rc == 1
    assert re.search(r"10_fails\s+failed", out) and re.search(r"20_works\s+ok", out)
    run = next(p for p in (tmp_path / "r").iterdir() if p.is_dir())
    page = (run / "index.html").read_text()
    assert "ValueError" in page and "boom" in page
    for href in _hrefs(page):  # every local link of the index resolves
        if not href.startswith(("http:", "https:", "#", "mailto:")):
            assert (run / href).exists(), href
    assert (run / "20_works.html").is_file() and (run / "01_write_metrics" / "metrics.json").is_file()


def test_parameters_are_typed_against_the_notebooks_defaults(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "10_make.py", "print(1)")
    assert reports.notebook_params(nbs / "10_make.py", {"PROFILE": "smoke", "RUN_DIR": "/r"}, {"10": {"X": 2}})["X"] == 2
    with pytest.raises(ValueError, match=r"10_make.py: parameter X must be int"):
        reports.notebook_params(nbs / "10_make.py", {"PROFILE": "smoke", "RUN_DIR": "/r"}, {"10": {"X": "two"}})
    with pytest.raises(ValueError, match="parameter X must be int"):  # a global entry is typed too
        reports.run_pipeline("smoke", out_root=tmp_path / "reports", notebooks_dir=nbs, params={"X": [1]})
    assert not (tmp_path / "reports").exists()


DOMAIN_BODY = """
import json
from pathlib import Path
out = Path(RUN_DIR) / f"20_train[{DOMAIN}]"
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(json.dumps({"domain": DOMAIN, "real_dir": REAL_DIR}))
"""


def _domain_notebook(path: Path, domains):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('PROFILE = "cpu"\nRUN_DIR = ""\nDOMAIN = "sim"\nREAL_DIR = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# d"), params, nbformat.v4.new_code_cell(DOMAIN_BODY)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["semlab"] = {"domains": list(domains)}
    nb.metadata["jupytext"] = {"notebook_metadata_filter": "semlab,kernelspec"}
    jupytext.write(nb, str(path), fmt="py:percent")


@pytest.mark.slow
def test_domain_aware_notebooks_run_once_per_domain(tmp_path, capsys):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _domain_notebook(nbs / "20_train.py", ["sim", "real"])
    _domain_notebook(nbs / "40_detect.py", ["sim"])
    _notebook(nbs / "00_plain.py", "print('once')")
    res = reports.run_pipeline("smoke", out_root=tmp_path / "r", notebooks_dir=nbs, domain="both",
                               real_dir="/my/sem")
    steps = {s["name"]: s for s in res.steps}
    assert list(steps) == ["00_plain", "20_train[sim]", "20_train[real]", "40_detect[sim]", "40_detect[real]"]
    assert json.loads((res.run_dir / "20_train[real]" / "metrics.json").read_text()) == {
        "domain": "real", "real_dir": "/my/sem"}
    assert json.loads((res.run_dir / "20_train[sim]" / "metrics.json").read_text())["domain"] == "sim"
    assert steps["40_detect[real]"]["status"] == "skipped" and "no real-domain version" in steps["40_detect[real]"]["error"]["evalue"]
    assert res.ok  # an unsupported domain is reported, not a failure
    assert (res.run_dir / "20_train[real].html").is_file()
    with pytest.raises(ValueError, match="unknown domain"):
        reports.run_pipeline("smoke", out_root=tmp_path / "r2", notebooks_dir=nbs, domain="mars")
    with pytest.raises(KeyError, match="unknown profile"):
        reports.run_pipeline("bogus", out_root=tmp_path / "r3", notebooks_dir=nbs)
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()


# ------------------------------------------------------------------- the dashboard

class _Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children, self.content = tag, dict(attrs), parent, [], []

    def all_text(self) -> str:
        return " ".join("".join(c if isinstance(c, str) else c.all_text() for c in self.content).split())

    def find_all(self, tag, **attrs):
        out = []
        for c in self.children:
            if c.tag == tag and all(c.attrs.get(k) == v or (k == "class_" and v in (c.attrs.get("class") or "").split())
                                    for k, v in attrs.items()):
                out.append(c)
            out.extend(c.find_all(tag, **attrs))
        return out

    def walk(self):
        return [n for c in self.children for n in (c, *c.walk())]


def _parse(page: str) -> _Node:
    """The page as a tree (html.parser): tags, attributes, text."""
    from html.parser import HTMLParser

    void = {"img", "br", "meta", "hr", "col", "input", "link"}

    class P(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.root = self.cur = _Node("root", [], None)

        def handle_starttag(self, tag, attrs):
            node = _Node(tag, attrs, self.cur)
            self.cur.children.append(node)
            self.cur.content.append(node)
            if tag not in void:
                self.cur = node

        def handle_endtag(self, tag):
            node = self.cur
            while node is not None and node.tag != tag:
                node = node.parent
            if node is not None and node.parent is not None:
                self.cur = node.parent

        def handle_data(self, data):
            self.cur.content.append(data)

    p = P()
    p.feed(page)
    p.close()
    return p.root


HOSTILE = "a|b`<img src=x onerror=alert(1)>`"


def _png(path: Path, size=(40, 30)) -> None:
    from PIL import Image

    Image.new("L", size, 128).save(path)


def _dashboard_run(tmp_path: Path) -> tuple[Path, dict]:
    """A run folder as the runner leaves it: steps of the new and the old metrics.json
    shapes, a real-domain step, a failed and an unsupported one; a hostile question and
    metric name."""
    from semlab.runs import metric, metrics_doc

    run = tmp_path / "20260102T030405Z-smoke-nogit"
    docs = {
        "10_make[sim]": metrics_doc("10_make", "sim", "test", 40, {
            "psnr_db": metric(12.3, 11.8, 12.9, 40, "dB"),
            HOSTILE: metric(0.5, 0.4, 0.6, 12, "", note="per image"),
            "hidden_key": metric(7.0, 6.0, 8.0, 40)}, headline=["psnr_db", HOSTILE], figure="main.png"),
        "20_old": {"pix2pix": {"psnr": 31.25, "ssim": 0.8125}, "profile": "smoke", "cyclegan": {"psnr": 28.5}},
        "30_real[real]": metrics_doc("30_real", "real", "sem-lines", 7, {
            "epe_nm": metric(1.25, 1.0, 1.5, 7, "nm"), "iou": metric(0.75, None, None, 7)},
            headline=["epe_nm", "iou"], figure=None),
    }
    for name, doc in docs.items():
        (run / name).mkdir(parents=True)
        (run / name / "metrics.json").write_text(json.dumps(doc))
    _png(run / "10_make[sim]" / "main.png")
    _png(run / "10_make[sim]" / "another.png")
    _png(run / "20_old" / "b_curves.png")
    _png(run / "20_old" / "a_grid.png")
    _png(run / "30_real[real]" / "unnamed.png")  # its metrics.json names no figure: no thumbnail

    def step(name, status, seconds, question, **kw):
        s = {"name": name, "notebook": name.split("[")[0], "domain": None, "question": question, "status": status,
             "seconds": seconds, "html": f"{name}.html", "ipynb": f"{name}.ipynb", "metrics": docs.get(name),
             "error": None, **kw}
        s.update(reports.step_summary(s["metrics"], run / name))  # as the runner records it
        return s

    steps = [
        step("10_make[sim]", "ok", 2.5, HOSTILE),
        step("20_old", "ok", 125.0, "Does the old shape still show?"),
        step("30_real[real]", "ok", 3.0, "How far are the real contours?"),
        step("40_fail", "failed", 1.0, "Does it fail?",
             error={"ename": "ValueError", "evalue": "boom <b>\nsecond line", "traceback": "tb", "cell": "2"}),
        step("45_unsup[real]", "skipped", 0.0, "Real?", unsupported=True,
             error={"ename": "Skipped", "evalue": "not run: no real-domain version", "traceback": ""}),
    ]
    meta = {"run_id": run.name, "profile": "smoke", "git": "nogit", "started": "s", "finished": "f",
            "status": "failed", "params": {}, "notebooks": ["10_make", "20_old", "30_real", "40_fail", "45_unsup"],
            "domain": "both", "steps": steps, "seconds": 131.5}
    (run / "run.json").write_text(json.dumps(meta))
    return run, docs


def test_step_summary_reads_new_and_old_metrics_shapes(tmp_path):
    run, docs = _dashboard_run(tmp_path)
    new = reports.step_summary(docs["10_make[sim]"], run / "10_make[sim]")
    assert new["figure"] == "main.png" and new["data"] == {"domain": "sim", "set": "test", "n": 40}
    assert [h["key"] for h in new["headline"]] == ["psnr_db", HOSTILE]  # the named ones, not hidden_key
    assert new["headline"][0] == {"key": "psnr_db", "value": 12.3, "ci_low": 11.8, "ci_high": 12.9, "n": 40,
                                  "unit": "dB", "note": ""}
    old = reports.step_summary(docs["20_old"], run / "20_old")
    assert old["data"] is None and old["figure"] == "a_grid.png"  # the first PNG
    assert old["headline"] == [{"key": "pix2pix.psnr", "value": 31.25}, {"key": "pix2pix.ssim", "value": 0.8125},
                               {"key": "cyclegan.psnr", "value": 28.5}]  # numbers only, at most 3
    assert reports.step_summary(docs["30_real[real]"], run / "30_real[real]")["figure"] is None
    # a figure that is not a plain name in the step folder is never used
    for bad in ("../../escape.png", "/etc/x.png", "missing.png"):
        doc = dict(docs["10_make[sim]"], figure=bad)
        assert reports.step_summary(doc, run / "10_make[sim]")["figure"] is None, bad
    assert reports.step_summary(None, tmp_path / "nowhere") == {"data": None, "headline": [], "figure": None}


def test_dashboard_cards_headlines_thumbnails_and_collapsed_table(tmp_path):
    from urllib.parse import unquote

    run, docs = _dashboard_run(tmp_path)
    page = reports.write_run_index(run).read_text()
    root = _parse(page)
    cards = {c.attrs["id"]: c for c in root.find_all("section", class_="card")}
    assert list(cards) == ["step-10_make[sim]", "step-20_old", "step-30_real[real]", "step-40_fail",
                           "step-45_unsup[real]"]

    sim = cards["step-10_make[sim]"]
    assert sim.find_all("p", class_="question")[0].all_text() == HOSTILE  # shown as text
    values = [li.all_text() for li in sim.find_all("li")]
    assert values == ["psnr_db: 12.3 [11.8, 12.9] dB", f"{HOSTILE}: 0.5 [0.4, 0.6] (n = 12)"]
    assert sim.find_all("p", class_="data")[0].all_text() == "simulated data \u00b7 set test \u00b7 n = 40"
    assert "real" not in sim.all_text().replace("Real", "")  # simulated data is never called real
    assert "hidden_key" not in sim.all_text()
    (img,) = sim.find_all("img")
    assert unquote(img.attrs["src"]) == "10_make[sim]/main.png" and (run / unquote(img.attrs["src"])).is_file()
    assert img.parent.tag == "a" and unquote(img.parent.attrs["href"]) == "10_make[sim].html"
    assert "ok" in sim.find_all("span", class_="status")[0].all_text() and "2.5 s" in sim.all_text()

    real = cards["step-30_real[real]"]
    assert [li.all_text() for li in real.find_all("li")] == ["epe_nm: 1.25 [1, 1.5] nm", "iou: 0.75"]
    assert real.find_all("p", class_="data")[0].all_text() == "real data \u00b7 set sem-lines \u00b7 n = 7"
    assert not real.find_all("img")  # figure: null

    old = cards["step-20_old"]
    assert [li.all_text() for li in old.find_all("li")] == ["pix2pix.psnr: 31.25", "pix2pix.ssim: 0.8125",
                                                            "cyclegan.psnr: 28.5"]
    assert "not stated" in old.find_all("p", class_="data")[0].all_text()
    assert unquote(old.find_all("img")[0].attrs["src"]) == "20_old/a_grid.png" and "2 min 05 s" in old.all_text()

    fail = cards["step-40_fail"]
    assert fail.find_all("span", class_="status")[0].all_text() == "failed"
    assert fail.find_all("p", class_="error")[0].all_text() == "ValueError: boom <b> second line"  # one line
    unsup = cards["step-45_unsup[real]"]
    assert unsup.find_all("span", class_="status")[0].all_text() == "unsupported"
    assert unsup.find_all("p", class_="error")[0].all_text() == "not run: no real-domain version"

    # every key of every metrics.json sits in one collapsed <details>
    (details,) = root.find_all("details")
    assert "open" not in details.attrs and details.find_all("summary")
    keys = {tr.find_all("td")[-2].all_text() for tr in details.find_all("tr") if tr.find_all("td")}
    for name, doc in docs.items():
        assert {k for k, _ in reports.flatten_metrics(doc)} <= keys, name
    assert f"metrics.{HOSTILE}.value" in keys and "metrics.hidden_key.ci_high" in keys
    assert not [c for c in cards.values() if c.find_all("table")]  # no key table in the cards

    # hostile names are text: no script, no event handler, no injected element
    everything = root.walk()
    assert len(everything) > 100 and all(not a.lower().startswith("on") for n in everything for a in n.attrs)
    assert not root.find_all("script") and len(root.find_all("img")) == 2
    assert "onerror=alert(1)&gt;" in page and "<img src=x" not in page
    # every link and image stays inside the run folder
    for n in root.find_all("a") + root.find_all("img"):
        ref = unquote(n.attrs.get("href") or n.attrs.get("src"))
        assert ref == "../index.html" or (run / ref).resolve().parent in (run, *run.iterdir()), ref


def test_dashboard_of_a_run_json_written_before_it_finds_thumbnails(tmp_path):
    run, _ = _dashboard_run(tmp_path)
    meta = json.loads((run / "run.json").read_text())
    for s in meta["steps"]:  # the fields the runner records now
        for k in ("question", "headline", "data", "figure"):
            s.pop(k, None)
    (run / "run.json").write_text(json.dumps(meta))
    root = _parse(reports.write_run_index(run).read_text())
    srcs = [img.attrs["src"] for img in root.find_all("img")]
    assert srcs == ["10_make%5Bsim%5D/main.png", "20_old/a_grid.png"]
    assert "psnr_db: 12.3 [11.8, 12.9] dB" in [li.all_text() for li in root.find_all("li")]


def test_dashboard_refuses_paths_outside_the_run(tmp_path):
    run, _ = _dashboard_run(tmp_path)
    meta = json.loads((run / "run.json").read_text())
    meta["steps"][0].update(figure="../../../etc/passwd.png", html="../../x.html", ipynb="/etc/passwd")
    meta["steps"][1].update(name="../20_old")
    page = reports.render_run_index(meta, run)
    root = _parse(page)
    refs = [n.attrs.get("href") or n.attrs.get("src") for n in root.find_all("a") + root.find_all("img")]
    assert not [r for r in refs if ".." in r and r != "../index.html" or r.startswith("/")], refs
    good = reports.write_run_index(run).read_text()
    (run / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"run.json: not valid JSON"):
        reports.write_run_index(run)
    assert (run / "index.html").read_text() == good  # the last good page is kept


def test_reports_index_lists_status_duration_and_step_counts(tmp_path):
    run, _ = _dashboard_run(tmp_path)
    reports.write_run_index(run)
    running = tmp_path / "20260102T040000Z-cpu-nogit"
    running.mkdir()
    (running / "run.json").write_text(json.dumps({"status": "running", "profile": "cpu", "started_ts": 2.0,
                                                  "notebooks": ["00_a", "10_b"],
                                                  "steps": [{"name": "00_a", "status": "ok", "seconds": 4.25}]}))
    root = _parse(reports.write_reports_index(tmp_path).read_text())
    header = [th.all_text() for th in root.find_all("th")]
    rows = [[td.all_text() for td in tr.find_all("td")] for tr in root.find_all("tr") if tr.find_all("td")]
    cols = dict(zip(header, zip(*rows)))
    assert cols["run"] == (running.name, run.name)  # newest first
    assert cols["status"] == ("running", "failed")
    assert cols["duration"] == ("4.2 s", "2 min 11 s")  # the steps so far; the wall clock once finished
    assert cols["steps ok"] == ("1/2", "3/5")  # a running run counts its pending notebooks
    assert cols["failed"] == ("0", "1: 40_fail") and cols["skipped"] == ("0", "1")


def test_dashboard_real_sem_section_lists_the_real_steps(tmp_path):
    """The "Real SEM" section names each step that ran on real frames, links its card and
    shows its data line and headline; a run without real steps says how to get them."""
    run, _ = _dashboard_run(tmp_path)
    root = _parse(reports.write_run_index(run).read_text())
    h2 = [h.all_text() for h in root.find_all("h2")]
    assert h2.index("Real SEM") < h2.index("Notebooks")
    table = next(t for t in root.find_all("table") if "headline" in t.all_text() and "step" in t.all_text())
    rows = [tr for tr in table.find_all("tr") if tr.find_all("td")]
    assert len(rows) == 1  # 30_real[real]; the unsupported 45_unsup[real] did not run on real frames
    cells = [td.all_text() for td in rows[0].find_all("td")]
    assert cells[0] == "30_real[real]" and rows[0].find_all("a")[0].attrs["href"] == "#step-30_real[real]"
    assert cells[2] == "real data \u00b7 set sem-lines \u00b7 n = 7" and "epe_nm: 1.25 [1, 1.5] nm" in cells[3]
    meta = json.loads((run / "run.json").read_text())
    meta["steps"] = [s for s in meta["steps"] if "[real]" not in s["name"]]
    page = reports.render_run_index(meta, run)
    assert "No step of this run ran on real SEM frames" in page and "--domain both" in page


def test_each_kernel_gets_private_ipc_sockets(tmp_path, monkeypatch):
    """Two notebooks starting kernels at once (two runs, or two test workers) must not share
    socket names: jupyter_client's default `kernel-ipc-N` in the working directory did
    ("Invalid Signature"), and left socket files in notebooks/."""
    monkeypatch.chdir(tmp_path)
    cls = reports._ipc_kernel_manager()
    a, b = cls(kernel_name="python3"), cls(kernel_name="python3")
    assert a.transport == b.transport == "ipc"
    assert a.ip != b.ip and Path(a.ip).parent.is_dir() and Path(b.ip).parent.is_dir()
    assert not Path(a.ip).is_relative_to(tmp_path) and not list(tmp_path.iterdir())
