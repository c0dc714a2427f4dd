"""Values interpolated into the Markdown that notebooks display are text, never markup
(issue 15 item 3): a name like ``a|b`<img src=x onerror=alert(1)>``` can neither split a
table cell nor become an ``<img>`` with a live handler, in the two renderers that show
these tables: nbconvert's (mistune, the HTML reports) and a CommonMark + GFM-tables
renderer with raw HTML on (markdown-it, as JupyterLab's).
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from markdown_it import MarkdownIt
from nbconvert.filters.markdown_mistune import markdown2html_mistune

HOSTILE = "a|b`<img src=x onerror=alert(1)>`"
RENDERERS = {"mistune (nbconvert)": markdown2html_mistune,
             "markdown-it (CommonMark, tables, raw HTML)": MarkdownIt("commonmark").enable("table").render}


class _Page(HTMLParser):
    """Tags, attributes, text and table rows (cell texts) of rendered Markdown."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.rows: list[list[str]] = []
        self.tables: list[list[list[str]]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _check(md: str, *, cells: int | None = None, in_cell: bool = True) -> list[_Page]:
    """Render `md` both ways: no element but text markup, no handler, the hostile value
    shown literally; with `cells`, every row of every table has exactly that many cells
    and (with `in_cell`) one cell is the hostile value itself."""
    pages = []
    for name, render in RENDERERS.items():
        page = _Page(render(md))
        tags = {t for t, _ in page.tags}
        assert not tags & {"img", "script", "iframe", "svg", "a"}, (name, tags, md)
        assert not [a for _, attrs in page.tags for a in attrs if a.lower().startswith("on")], (name, md)
        assert HOSTILE in "".join(page.text), (name, md)
        if cells is not None:
            assert page.tables, (name, md)
            for table in page.tables:
                assert {len(row) for row in table} == {cells}, (name, table)
            assert not in_cell or HOSTILE in [c for t in page.tables for row in t for c in row], (name, page.tables)
        pages.append(page)
    return pages


# ------------------------------------------------------------------------ metrics


def _metric_row(metric, value, status="ok", note=""):
    return {"metric": metric, "value": value, "ci_low": None if value is None else value - 1,
            "ci_high": None if value is None else value + 1, "n": 8, "status": status, "note": note}


def test_evaluate_to_markdown():
    from semlab.metrics.evaluate import to_markdown

    md = to_markdown([_metric_row(HOSTILE, 30.0, note=HOSTILE),
                      _metric_row("fid", None, status=f"unavailable: {HOSTILE}")])
    for page in _check(md, cells=4):
        (table,) = page.tables
        assert table[1] == [HOSTILE, "30 [29, 31]", "8", HOSTILE]  # numbers stay as formatted
        assert table[2][1] == f"unavailable: {HOSTILE}"


def test_evaluate_comparison_table():
    from semlab.metrics.evaluate import comparison_table

    md = comparison_table({HOSTILE: [_metric_row("psnr", 30.0), _metric_row(HOSTILE, 2.0)],
                           "other": [_metric_row("psnr", 20.0), _metric_row(HOSTILE, None, f"{HOSTILE}: why")]})
    for page in _check(md, cells=3):
        (table,) = page.tables
        assert table[0] == ["model", "psnr", HOSTILE] and table[1][:2] == [HOSTILE, "30 [29, 31]"]
        assert table[2][2] == f"{HOSTILE} [1]" and f"[1] {HOSTILE}: why" in "".join(page.text)
        assert page.tags.count(("strong", {})) == 1  # the best PSNR is still bold


def test_tables_summary_text():
    from semlab.metrics import tables

    res = {HOSTILE: [_metric_row("psnr", 30.0), _metric_row("fid", 5.0)],
           "b|c": [_metric_row("psnr", 10.0), _metric_row("fid", 50.0)]}
    for page in _check(tables.summary_text(res, metrics=("psnr", "fid"))):
        text = "".join(page.text)
        assert f"best is {HOSTILE} (30)" in text and "ahead of b|c (10)" in text
        assert f"Pixel and distribution metrics agree on {HOSTILE}." in text


# ----------------------------------------------------------------------- forensics


def test_fake_sets_table():
    from semlab.forensics.study_types import FakeSets

    z = np.zeros((2, 4, 4), np.float32)
    sets = FakeSets(dataset=Path("d"), splits=("test",), ids=["0", "1"], real=z, masks=z,
                    fakes={HOSTILE: z}, sources={HOSTILE: f"/data/{HOSTILE}/generator.pt"},
                    missing={"b|c": f"no generator in {HOSTILE}"})
    for page in _check(sets.table(), cells=3):
        (table,) = page.tables
        assert table[1] == [HOSTILE, "2", f"/data/{HOSTILE}/generator.pt"]
        assert table[2] == ["b|c", "missing", f"no generator in {HOSTILE}"]


def _spectral():
    from semlab.forensics.spectrum import SpectralPeak
    from semlab.forensics.study_types import SpectralStudy

    bands = [{"set": HOSTILE, "band": b, "ratio_db": 1.5, "ratio_db_lo": 1.0, "ratio_db_hi": 2.0}
             for b in ("(0.25, 0.5]", HOSTILE)]
    peak = SpectralPeak(fy=0.125, fx=0.0, freq=0.125, period_px=8.0, period_y=8.0, period_x=float("inf"),
                        z=9.0, excess_db=3.0, amplitude=0.1)
    return SpectralStudy(comparison=None, bands=bands, differences={}, ratios={},
                         peaks={HOSTILE: [peak]}, size=64, threshold=4.0)


def test_spectral_band_and_peak_tables():
    study = _spectral()
    for page in _check(study.band_table(), cells=3):
        (table,) = page.tables
        assert table[0] == ["model", "(0.25, 0.5] c/px", f"{HOSTILE} c/px"]
        assert table[1] == [HOSTILE, "+1.5 [+1.0, +2.0] dB", "+1.5 [+1.0, +2.0] dB"]
    for page in _check(study.peak_table(), cells=4):
        assert page.tables[0][1][0] == HOSTILE


def test_results_table_and_conclusion():
    from semlab.forensics.narrative import conclusion
    from semlab.forensics.results import format_results_table

    nan = float("nan")
    row = {"model": HOSTILE, "n_pairs": 12, "n_splits": 3, "splits": f"val+{HOSTILE}", "level": 0.95,
           "detector": "small_cnn", "n_peaks": 0, "n_grid_peaks": 0, "hf_db": -0.2, "hf_db_lo": -0.6, "hf_db_hi": 0.3,
           "attr_high_share": nan, "image_high_share": nan}
    for k, (v, lo, hi) in {"accuracy": (0.97, 0.94, 0.99), "balanced_accuracy": (0.97, 0.94, 0.99),
                           "auc": (0.98, 0.95, 1.0), "spectrum_accuracy": (0.51, 0.4, 0.6),
                           "spectrum_auc": (0.5, 0.4, 0.6), "edge_enrichment": (nan, nan, nan),
                           "top_band_db": (nan, nan, nan)}.items():
        row.update({k: v, f"{k}_lo": lo, f"{k}_hi": hi})
    row.update(top_band="", hf_band="(0.25, 0.5]", peak_fy=nan, peak_fx=nan, peak_period_px=nan, peak_z=nan,
               peak_on_grid=False, grid_peak_fy=nan, grid_peak_fx=nan, grid_peak_period_px=nan, grid_peak_z=nan,
               n_wrong_examples=0)
    missing = {"model": "b|c", "missing": f"no generator in {HOSTILE}"}
    for page in _check(format_results_table([row, missing]), cells=10):
        (table,) = page.tables
        assert table[1][:3] == [HOSTILE, "12", "0.97 [0.94, 0.99]"] and table[2][:2] == ["b|c", "missing"]
    for page in _check(conclusion([row, missing])):
        text = "".join(page.text)
        assert f"{HOSTILE}: the" in text and f"({HOSTILE} (0.97))" not in text
        assert f"Detectable, from easiest to hardest: {HOSTILE} (0.97)." in text
        assert f"b|c: no generator in {HOSTILE}." in text and f"(val+{HOSTILE})" in text


def test_detection_result_table():
    from semlab.forensics.detector import assemble_result

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 10)
    scores = rng.normal(size=20) + 2 * labels
    folds = [(np.arange(20)[np.arange(20) % 2 == k], np.arange(20)[np.arange(20) % 2 != k]) for k in (0, 1)]
    res = assemble_result(HOSTILE, labels, np.arange(20) % 10, scores, folds, n_boot=50)
    for page in _check(res.table(), cells=4):
        (table,) = page.tables
        assert {row[0] for row in table[1:]} == {HOSTILE} and len(table) == 1 + len(res.metrics)


# ------------------------------------------------------------------------ contours


def test_real_lines_markdown():
    from semlab.contours.real_lines import RealLines

    rows = [{"image": HOSTILE, "unit": "nm", "pixel_nm": 1.5, "fallback_rate": 0.25}]
    lines = [{"image": HOSTILE, "cd": cd, "lwr": 1.0, "ler_left": 0.5, "ler_right": 0.7} for cd in (20.0, 22.0)]
    md = RealLines(folder=None, rows=rows, lines=lines, examples=[]).markdown()
    for page in _check(md, cells=8):
        assert page.tables[0][1][:4] == [HOSTILE, "1.500", "1", "2"]
    empty = RealLines(folder=None, rows=[], lines=[], examples=[], reason=f"folder {HOSTILE} not found")
    for page in _check(empty.markdown()):
        assert f"No real line/space images: folder {HOSTILE} not found" in "".join(page.text)


def test_experiment_result_markdown(tmp_path):
    from semlab.contours.experiment_config import KEYS, ExperimentConfig
    from semlab.contours.experiment_result import ExperimentResult

    rng = np.random.default_rng(1)
    rows = [{"method": "classical", "test_set": "cv", "fallback_rate": 1.0,
             **{k: float(v) for k, v in zip(KEYS, rng.uniform(0.5, 2.0, len(KEYS)))}} for _ in range(6)]
    cfg = ExperimentConfig(profile="smoke", methods=("classical", "sam2_zero_shot"), n_boot=50)
    res = ExperimentResult(config=cfg, out=tmp_path, rows=rows, folds=[], ood={},
                           sam2_reason=f"SAM2 weights unavailable: {HOSTILE}", reused=[], seconds=0.0)
    n_cols = 2 + len(KEYS) + 1
    for page in _check(res.markdown("cv"), cells=n_cols, in_cell=False):
        (table,) = page.tables
        assert table[2][:3] == ["SAM2 zero-shot", "0", "unavailable (a)"]
        assert f"(a) SAM2 weights unavailable: {HOSTILE}" in "".join(page.text)
    # a test set name is shown as text too
    res2 = ExperimentResult(config=cfg, out=tmp_path, rows=rows, folds=[], ood={}, sam2_reason=None,
                            reused=[], seconds=0.0)
    for page in _check(res2.markdown(HOSTILE)):
        assert page.tags[0] == ("p", {}) and page.tags[1] == ("strong", {})
