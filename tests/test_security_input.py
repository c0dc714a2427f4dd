"""Untrusted input: manifest ids that try to leave their folder, and values that try to
become live HTML in the notebook reports.

Ids: `io.validate_id` / `io.inside` / `io.read_manifest`, and every reader and writer of
a dataset folder (`Dataset`, `DatasetWriter`, `semlab segment`, `merge_shards`).
HTML: `semlab.textfmt.md_escape` / `md_code` and `semlab.reports.notebook_to_html`.
"""

from __future__ import annotations

import base64
import io as _io
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from semlab import io
from semlab.cli import main
from semlab.data import datasets as D
from semlab.data.sources import list_images
from semlab.reports import clean_report_html, notebook_to_html
from semlab.segment.pipeline import merge_shards, segment_dataset
from semlab.textfmt import md_code, md_escape

BAD_IDS = ["../../x", "../victim", "/abs/path", "a/b", "a\\b", "..", ".", "a..b", ".hidden",
           "-rf", "", "x" * 201, "a b", "a\nb", "id\x00", "C:\\x", "caf\u00e9", "~root", "$HOME"]


# ----------------------------------------------------------------------------- ids


@pytest.mark.parametrize("bad", BAD_IDS, ids=[repr(b)[:24] for b in BAD_IDS])
def test_validate_id_refuses_everything_but_plain_names(bad):
    with pytest.raises(io.UnsafePathError) as exc:
        io.validate_id(bad, "data/ds/manifest.csv, line 7")
    msg = str(exc.value)
    assert msg.startswith("data/ds/manifest.csv, line 7: unsafe item id ") and repr(bad) in msg


@pytest.mark.parametrize("good", ["000001", "a", "Anomaly_train__img_001_r00000_c00024", "x.y-z_1",
                                  "_x", "9" * 200])
def test_validate_id_accepts_plain_names(good):
    assert io.validate_id(good) == good


def test_inside_keeps_paths_under_their_root(tmp_path):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    assert io.inside(root, "images", "000001.png") == root / "images" / "000001.png"
    for rel in (("images", "../../x.png"), ("..", "x"), ("/etc/passwd",), ("images", "/tmp/x.png")):
        with pytest.raises(io.UnsafePathError, match="outside"):
            io.inside(root, *rel)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "masks").symlink_to(outside, target_is_directory=True)  # a link out of the folder
    with pytest.raises(io.UnsafePathError, match=re.escape(str(outside.resolve()))):
        io.inside(root, "masks", "000001.png")


def _dataset(tmp_path, n=4, name="ds") -> Path:
    return D.simulate_dataset(tmp_path / name, preset="line-space", n=n, size=32, progress=False)


def _poison(manifest: Path, row: int, new_id: str) -> None:
    """Replace the id of data row `row` (0-based) of a manifest."""
    lines = manifest.read_text().splitlines(keepends=True)
    first, rest = lines[row + 1].split(",", 1)
    lines[row + 1] = f'"{new_id}",{rest}' if "," in new_id else f"{new_id},{rest}"
    manifest.write_text("".join(lines))


def test_read_manifest_names_the_file_the_line_and_the_id(tmp_path):
    ds = _dataset(tmp_path)
    assert [r["id"] for r in io.read_manifest(ds / "manifest.csv")] == ["000000", "000001", "000002", "000003"]
    _poison(ds / "manifest.csv", 2, "../../victim")
    with pytest.raises(io.UnsafePathError) as exc:
        io.read_manifest(ds / "manifest.csv")
    assert str(exc.value).startswith(f"{ds / 'manifest.csv'}, line 4: unsafe item id '../../victim'")
    (tmp_path / "other.csv").write_text("name,split\nx,train\n")
    with pytest.raises(io.UnsafePathError, match="no 'id' column"):
        io.read_manifest(tmp_path / "other.csv")


@pytest.mark.parametrize("bad", ["../../victim", "/abs/victim", "..", "sub/victim"])
def test_dataset_refuses_a_manifest_with_an_unsafe_id(tmp_path, bad):
    ds = _dataset(tmp_path)
    _poison(ds / "manifest.csv", 1, bad)
    with pytest.raises(io.UnsafePathError, match=re.escape(f"manifest.csv, line 3: unsafe item id {bad!r}")):
        D.load_dataset(ds)


def test_dataset_accessors_refuse_unsafe_ids_and_escaping_folders(tmp_path):
    ds_root = _dataset(tmp_path)
    ds = D.load_dataset(ds_root)
    assert ds.image("000001").shape == (32, 32)
    for bad in ("../000001", "/etc/passwd", "..\\x"):
        for read in (ds.image, ds.mask, ds.clean, ds.contours):
            with pytest.raises(io.UnsafePathError):
                read(bad)
    # a dataset whose images/ is a link to another folder: nothing is read through it
    elsewhere = tmp_path / "elsewhere"
    (ds_root / "images").rename(elsewhere)
    (ds_root / "images").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(io.UnsafePathError, match="outside"):
        D.load_dataset(ds_root).image("000001")


def test_writer_refuses_unsafe_ids_and_poisoned_manifests(tmp_path):
    ds = _dataset(tmp_path)
    _poison(ds / "manifest.csv", 0, "/abs/victim")
    with pytest.raises(io.UnsafePathError, match="line 2: unsafe item id '/abs/victim'"):
        _dataset(tmp_path)  # resuming reads the manifest
    w = D.DatasetWriter(tmp_path / "new", kind="test", identity={"t": 1})
    img = np.zeros((8, 8), np.float32)
    for bad in ("../escaped", "/tmp/escaped", ".."):
        with pytest.raises(io.UnsafePathError, match="unsafe item id"):
            w.add(bad, img, split="train", group="g")
        with pytest.raises(io.UnsafePathError, match="unsafe item id"):
            w.add_failed(bad, split="train", group="g", source="", extra={})
    assert not (tmp_path / "escaped.png").exists() and not list(tmp_path.glob("new/**/*.png"))


def test_segment_does_not_read_or_write_outside_its_folders(tmp_path, capsys):
    """The reported attack: `../../x` in a manifest made `semlab segment` read outside the
    dataset and overwrite a PNG outside `--out`."""
    ds = _dataset(tmp_path / "a" / "b")
    victim = tmp_path / "a" / "victim.png"  # ds/images/../../victim.png
    io.write_image(victim, np.full((32, 32), 0.5, np.float32))
    before = victim.read_bytes()
    _poison(ds / "manifest.csv", 1, "../../victim")
    out = tmp_path / "seg"
    rc = main(["segment", str(ds), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "manifest.csv, line 3: unsafe item id '../../victim'" in err, err
    assert victim.read_bytes() == before and not out.exists()
    _poison(ds / "manifest.csv", 1, str(victim.with_suffix("")))  # an absolute path
    with pytest.raises(io.UnsafePathError, match="absolute path"):
        segment_dataset(ds, out, progress=False)
    assert victim.read_bytes() == before and not out.exists()


def test_merge_shards_refuses_a_poisoned_shard_manifest(tmp_path):
    ds = _dataset(tmp_path, n=4)
    out = tmp_path / "seg"
    for i in range(2):
        segment_dataset(ds, out, shard=(i, 2), progress=False)
    assert (out / "manifest.csv").is_file()
    shard = max((out / "shards").glob("manifest-*-of-2.csv"), key=lambda m: len(io.read_manifest(m)))
    _poison(shard, 0, "../../../victim")
    with pytest.raises(io.UnsafePathError, match=re.escape(f"{shard}, line 2")):
        merge_shards(out)


def test_imported_file_names_become_plain_ids(tmp_path):
    src = tmp_path / "src"
    (src / "-dir.x").mkdir(parents=True)
    names = ["..odd..name.png", ".hidden.png", "-rf.png", "sp ace\u00e9.png", "y" * 250 + ".png", "-dir.x/a..b.png"]
    for i, name in enumerate(names):
        Image.fromarray(np.full((16, 16), 20 * i, np.uint8)).save(src / name)
    ids = {D.safe_id(Path(n)) for n in names}
    assert len(ids) == len(names)
    for i in ids:
        assert io.validate_id(i) == i and len(i) <= 180
    out = D.import_images(src, tmp_path / "ds", tile=8, progress=False)
    ds = D.load_dataset(out)
    frames = list_images(src)  # hidden files are not listed
    assert len(frames) >= 4 and len(ds) == 4 * len(frames)
    assert all(ds.image(i).shape == (8, 8) for i in ds.ids)


# ----------------------------------------------------------------------- Markdown


def _render(markdown: str) -> str:
    """Markdown -> HTML as nbconvert renders a notebook's Markdown output."""
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    return MarkdownWithMath(renderer=IPythonRenderer(escape=False)).render(markdown)


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(html_text: str) -> _Tags:
    p = _Tags()
    p.feed(html_text)
    return p


CRAFTED = [
    "/data/x`<img src=x onerror=alert(1)>`/w",
    "<script>alert(1)</script>",
    "``a`` ` b ```c",
    "[click](javascript:alert(1))",
    "![x](http://evil/x.png)",
    "**bold** _em_ ~~del~~ $x^2$ $$y$$",
    "# heading\n\n<b onclick=alert(1)>x</b>\n- item",
    "a | b | c",
    "C:\\Users\\me\\*weights*\\",
    "&lt;img src=x onerror=alert(1)&gt; &amp; &#60;",
    "<a href='https://x'>link</a> <http://y> www.example.com",
    "1. not a list",
    "trailing backslash \\",
    "tab\tand\rcarriage\u2028sep",
]


@pytest.mark.parametrize("value", CRAFTED, ids=range(len(CRAFTED)))
def test_md_escape_renders_as_the_literal_text(value):
    html_text = _render(f"Path: {md_escape(value)} end")
    parsed = _parse(html_text)
    assert [t for t, _ in parsed.tags] == ["p"], html_text  # one paragraph, no other element
    literal = re.sub(r"\s+", " ", value)
    assert re.sub(r"\s+", " ", "".join(parsed.text)).strip() == f"Path: {literal} end".strip()


@pytest.mark.parametrize("value", CRAFTED, ids=range(len(CRAFTED)))
def test_md_code_renders_one_code_span_with_the_literal_text(value):
    html_text = _render(f"Path: {md_code(value)} end")
    parsed = _parse(html_text)
    assert [t for t, _ in parsed.tags] == ["p", "code"], html_text
    code = re.search(r"<code>(.*)</code>", html_text, re.S).group(1)
    assert "".join(_parse(code).text) == re.sub(r"[\t\r\n\u2028]+", " ", value)


def test_md_escape_examples():
    assert md_escape("a`b") == "a\\`b"
    assert md_escape("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert(1)&gt;"
    assert md_escape("x\n\n# y") == "x # y" and md_escape("# y") == "\\# y"
    assert md_escape(Path("/d/w_1.pt")) == "/d/w_1.pt"  # readable: intraword _ and . are literal
    assert md_escape("_a_ http://x 1. y") == "\\_a\\_ http\\://x 1. y" and md_escape("1. y") == "1\\. y"
    assert md_code("a`b") == "`` a`b ``" and md_code("plain") == "` plain `"


# ------------------------------------------------------------------------ reports


def _png() -> str:
    buf = _io.BytesIO()
    Image.fromarray((np.arange(48 * 64).reshape(48, 64) % 251).astype(np.uint8)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_report_html_is_sanitised_but_keeps_figures_tables_and_folded_code(tmp_path):
    path = "/data/x`<img src=x onerror=alert(1)>`/weights"
    table = ('<style scoped>.dataframe td {color: #123456}</style><table border="1" class="dataframe">'
             "<thead><tr><th></th><th>iou</th></tr></thead><tbody><tr><th>0</th><td>0.93</td></tr></tbody></table>")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell("display(Markdown(...))")
    cell.outputs = [
        nbformat.v4.new_output("display_data", {"text/markdown": f"Reason: `{path}` <img src=x onerror=alert(1)>"}),
        nbformat.v4.new_output("display_data", {"text/markdown": "<script>alert(2)</script>\n\n**ok**"}),
        nbformat.v4.new_output("display_data", {"text/html": '<a href="javascript:alert(3)">j</a>'
                                                             '<svg onload=alert(4)></svg><div onclick="x">d</div>'}),
        nbformat.v4.new_output("display_data", {"application/javascript": "alert(5)"}),
        nbformat.v4.new_output("display_data", {"image/png": _png(), "text/plain": "<Figure>"}),
        nbformat.v4.new_output("display_data", {"text/html": table, "text/plain": "df"}),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# Results\n\n<img src=y onerror=alert(6)>"), cell]
    # saved widget state (the mask painter): JSON in a <script> block, not needed in a report
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                            "version_minor": 0}}
    src = tmp_path / "10_make_dataset.ipynb"
    nbformat.write(nb, str(src))
    page = notebook_to_html(src, tmp_path / "10_make_dataset.html").read_text()

    parsed = _parse(page)
    handlers = [(t, k) for t, a in parsed.tags for k in a if k.lower().startswith("on")]
    assert not handlers, handlers
    assert "<script" not in page.lower() and "alert(5)" not in page and "alert(2)" not in page
    assert not [a for t, a in parsed.tags if t == "a" and "javascript" in (a.get("href") or "").lower()]
    assert "svg" not in [t for t, _ in parsed.tags]
    # what must survive: the figure, the table, the Markdown, the folded code
    imgs = [a.get("src", "") for t, a in parsed.tags if t == "img"]
    assert [s for s in imgs if s.startswith("data:image/png;base64," + _png()[:40])], imgs
    assert not [s for s in imgs if s and not s.startswith("data:image/")], imgs  # src=x and src=y dropped
    assert re.search(r"<table[^>]*>\s*<thead>.*<th>iou</th>.*<td>0\.93</td>", page, re.S)
    assert "#123456" not in page  # the style block is gone, not shown as text
    assert re.search(r'<h1 id="Results">Results', page) and "<strong>ok</strong>" in page
    assert '<details class="semlab-code"><summary>code</summary>' in page


def test_clean_report_html_allowlist():
    dirty = ('<p title="t" style="x" onmouseover="a()">p</p><a href="data:text/html,x">d</a>'
             '<a href="  JaVaScRiPt:alert(1)">j</a><a href="https://example.org/">w</a><a href="#sec">s</a>'
             '<img src="data:image/svg+xml;base64,AAAA"><img src="data:image/png;base64,AAAA" onerror="x">'
             "<iframe src=x></iframe><form><input></form><!-- c -->")
    tags = _parse(clean_report_html(dirty)).tags
    assert tags == [("p", {"title": "t"}), ("a", {}), ("a", {}), ("a", {"href": "https://example.org/"}),
                    ("a", {"href": "#sec"}), ("img", {}), ("img", {"src": "data:image/png;base64,AAAA"})]


def test_reports_module_stays_small():
    for mod in ("semlab/reports.py", "semlab/io.py", "semlab/textfmt.py", "semlab/lab.py"):
        n = len((Path(__file__).resolve().parents[1] / mod).read_text().splitlines())
        assert n < 800, f"{mod}: {n} lines (house rule: under 800)"


if os.name != "posix":  # symbolic links in the tests above
    pytestmark = pytest.mark.skip("POSIX only")


# ------------------------------------------------------- TIFF decompression bombs

_DECODE = """
import resource, sys
from semlab import io
try:
    io.read_image(sys.argv[1])
    print("DECODED")
except io.ImageReadError as e:
    print("ERROR", e)
print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
# Linux carries ru_maxrss over exec from the process that spawned it (with vfork: the big
# pytest worker), so the decoder is started by a small interpreter of its own.
_SPAWN = "import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-c', *sys.argv[1:]]).returncode)"


def _bomb(path: Path, n: int = 20000, t: int = 2000) -> Path:
    """A zlib TIFF of n x n zeros, written tile by tile (never n x n in memory): ~400 KB."""
    import tifffile

    tile = np.zeros((t, t), np.uint8)
    tifffile.imwrite(path, (tile for _ in range((n // t) ** 2)), shape=(n, n), dtype=np.uint8,
                     compression="zlib", tile=(t, t), photometric="minisblack")
    return path


def test_tiff_bomb_is_refused_from_its_header_in_a_fresh_process(tmp_path):
    """Issue 15 item 9 ([B]): a 400 KB, 20000x20000 zlib TIFF took 3.6-6.3 GB. Decoded in
    a fresh interpreter (a pytest worker's own peak says nothing), it is refused before
    decoding: a clear error naming the file, and a peak RSS far below 500 MB."""
    import subprocess
    import sys

    bomb = _bomb(tmp_path / "bomb.tif")
    assert bomb.stat().st_size < 2_000_000
    env = {k: v for k, v in os.environ.items() if k != "SEMLAB_MAX_IMAGE_PIXELS"}
    r = subprocess.run([sys.executable, "-c", _SPAWN, _DECODE, str(bomb)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"ERROR {bomb}: 20000x20000 px = 400 Mpx exceeds the limit of 89 Mpx" in r.stdout
    rss_mb = int(r.stdout.split("MAXRSS_KB")[1]) / 1024
    assert rss_mb < 500, f"peak RSS {rss_mb:.0f} MB"


def test_pixel_limit_is_configurable_and_covers_png(tmp_path, monkeypatch):
    small = tmp_path / "s.tif"
    __import__("tifffile").imwrite(small, np.zeros((40, 50), np.uint8), photometric="minisblack")
    png = tmp_path / "s.png"
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(png)
    for p in (small, png):
        assert io.read_image(p).shape == (40, 50)
        with pytest.raises(io.ImageReadError, match=re.escape(f"{p}: 50x40 px")):
            io.read_image(p, max_pixels=1999)
        monkeypatch.setenv("SEMLAB_MAX_IMAGE_PIXELS", "1999")
        with pytest.raises(io.ImageReadError, match="exceeds the limit"):
            io.read_image(p)
        assert io.read_image(p, max_pixels=2000).shape == (40, 50)
        monkeypatch.setenv("SEMLAB_MAX_IMAGE_PIXELS", "none")
        assert io.read_image(p).shape == (40, 50)
        monkeypatch.delenv("SEMLAB_MAX_IMAGE_PIXELS")
    monkeypatch.setenv("SEMLAB_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="SEMLAB_MAX_IMAGE_PIXELS"):
        io.read_image(png)


def test_a_bomb_in_an_import_is_one_failed_item(tmp_path, monkeypatch, capsys):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.full((40, 50), 9, np.uint8)).save(src / "ok.png")
    __import__("tifffile").imwrite(src / "big.tif", np.zeros((100, 100), np.uint8), photometric="minisblack")
    monkeypatch.setenv("SEMLAB_MAX_IMAGE_PIXELS", "5000")
    assert main(["import-images", str(src), "--out", str(tmp_path / "ds"), "--quiet"]) == 1
    (bad,) = D.load_dataset(tmp_path / "ds").excluded
    assert bad["id"] == "big" and "exceeds the limit" in bad["reason"]
    assert "1 ok, 1 failed" in capsys.readouterr().out
