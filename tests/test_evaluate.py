"""`semlab evaluate`: the tidy table, honest unavailable cells, exports, comparisons."""

import csv

import numpy as np
import pytest
from scipy import ndimage

from semlab import io
from semlab.metrics.evaluate import comparison_table, evaluate, to_latex, to_markdown, write_table
from semlab.metrics.pixel import psnr


def _sets(n=12, size=48, seed=0):
    rng = np.random.default_rng(seed)
    real = [np.clip(0.5 + 0.1 * rng.normal(size=(size, size)), 0, 1).astype(np.float32) for _ in range(n)]
    fake = [np.clip(ndimage.gaussian_filter(r, 1) + 0.01, 0, 1).astype(np.float32) for r in real]
    return real, fake


def test_paired_rows_and_unavailable_cells(no_weights):
    real, fake = _sets()
    rows = {r["metric"]: r for r in evaluate(real, fake, paired=True, n_boot=100)}
    want = float(np.mean([psnr(f, r) for f, r in zip(fake, real)]))
    assert rows["psnr"]["value"] == pytest.approx(want) and rows["psnr"]["ci_low"] < want < rows["psnr"]["ci_high"]
    assert 0 < rows["ssim"]["value"] < 1 and 0 < rows["ms_ssim"]["value"] < 1
    for m, f in (("fid", "pt_inception-2015-12-05-6726825d.pth"), ("kid", "pt_inception"),
                 ("lpips", "alexnet-owt-7be5be79.pth")):
        assert rows[m]["value"] is None and rows[m]["status"].startswith("unavailable: ") and f in rows[m]["status"]
    assert rows["spectral_distance_db"]["value"] > 1  # blurred fakes lose high frequencies
    assert "real" in rows["hf_ratio_gap"]["note"]


def test_exports(no_weights, tmp_path):
    real, fake = _sets()
    rows = evaluate(real, fake, paired=True, metrics=("psnr", "fid"), n_boot=50)
    p = write_table(rows, tmp_path / "t.csv")
    got = list(csv.DictReader(open(p)))
    assert [r["metric"] for r in got] == ["psnr", "fid"] and got[1]["status"].startswith("unavailable")
    md = to_markdown(rows)
    assert md.count("\n") == 3 and "| psnr |" in md and "unavailable" in md
    tex = to_latex(rows)
    assert r"\begin{tabular}" in tex and r"95\% CI" in tex
    with pytest.raises(ValueError, match="suffix"):
        write_table(rows, tmp_path / "t.xlsx")


def test_comparison_marks_the_best_per_column():
    a = [{"metric": "psnr", "value": 30.0, "ci_low": 29.0, "ci_high": 31.0, "n": 5, "status": "ok", "note": ""},
         {"metric": "fid", "value": 20.0, "ci_low": None, "ci_high": None, "n": 5, "status": "ok", "note": ""}]
    b = [{"metric": "psnr", "value": 25.0, "ci_low": 24.0, "ci_high": 26.0, "n": 5, "status": "ok", "note": ""},
         {"metric": "fid", "value": 10.0, "ci_low": None, "ci_high": None, "n": 5, "status": "ok", "note": ""}]
    md = comparison_table({"pix2pix": a, "cyclegan": b})
    lines = md.splitlines()
    assert lines[0] == "| model | psnr | fid |"
    assert "**30 [29, 31]**" in lines[2] and "**10**" in lines[3]  # higher PSNR, lower FID
    assert r"\textbf{30 [29, 31]}" in comparison_table({"pix2pix": a, "cyclegan": b}, fmt="latex")


def test_cli_evaluate_folders(no_weights, tmp_path, capsys):
    from semlab import cli

    real, fake = _sets(n=6)
    for d, imgs in (("r", real), ("f", fake)):
        (tmp_path / d).mkdir()
        for i, im in enumerate(imgs):
            io.write_image(tmp_path / d / f"{i:03d}.png", im)
    out = f"{tmp_path / 't.csv'},{tmp_path / 't.md'}"
    rc = cli.main(["evaluate", "--real", str(tmp_path / "r"), "--fake", str(tmp_path / "f"), "--paired",
                   "--metrics", "psnr,ssim,spectral", "--out", out])
    assert rc == 0 and "| psnr |" in capsys.readouterr().out
    assert (tmp_path / "t.csv").is_file() and (tmp_path / "t.md").is_file()
    (tmp_path / "g").mkdir()
    io.write_image(tmp_path / "g" / "zzz.png", fake[0])
    assert cli.main(["evaluate", "--real", str(tmp_path / "r"), "--fake", str(tmp_path / "g"), "--paired"]) == 2


def test_sem_encoder_rows_are_named_apart_and_work_without_weights(no_weights):
    """FD_sem / KD_sem need no downloaded weights; the table names the encoder and never
    calls them FID; with fid_inf the unavailable FID-infinity says why."""
    from semlab.metrics.fid import fid_from_features
    from semlab.metrics.sem_encoder import EncoderConfig, train_sem_encoder

    real, fake = _sets(n=16, size=48)
    enc = train_sem_encoder(real, EncoderConfig(steps=3, batch_size=8, crop=32, width=4), progress=False)
    timings = {}
    rows = {r["metric"]: r for r in evaluate(real, fake, metrics=("fid",), sem_encoder=enc, fid_inf=True,
                                             n_boot=40, timings=timings)}
    assert rows["fid"]["value"] is None and rows["fid_inf"]["value"] is None
    assert "unavailable" in rows["fid_inf"]["status"]
    fd = rows["fd_sem"]
    assert fd["value"] == pytest.approx(fid_from_features(enc.features(real), enc.features(fake)), rel=1e-9)
    assert fd["ci_low"] < fd["ci_high"] and "not FID" in fd["note"]
    assert rows["kd_sem"]["ci_low"] < rows["kd_sem"]["ci_high"]
    assert "fd_sem_inf" in rows and "Chong" in rows["fd_sem_inf"]["note"]
    assert set(timings) >= {"sem_real", "sem_fake", "fd_kd_sem"}


def test_kid_bootstrap_interval_matches_a_direct_resampling():
    """Reference: each resample's unbiased MMD^2 over all pairs of drawn items whose
    ORIGINAL indices differ (explicit pair enumeration)."""
    from semlab.metrics import fid as F

    rng = np.random.default_rng(2)
    f1, f2 = rng.normal(size=(40, 6)), rng.normal(size=(35, 6)) + 0.3
    lo, hi = F.kid_bootstrap(f1, f2, n_boot=30, seed=7)
    r = np.random.default_rng(7)
    k = lambda a, b: (a @ b.T / 6 + 1) ** 3  # noqa: E731
    vals = []
    for _ in range(30):
        ix, iy = r.integers(0, 40, 35), r.integers(0, 35, 35)
        ox, oy = ix[:, None] != ix[None, :], iy[:, None] != iy[None, :]
        vals.append(k(f1[ix], f1[ix])[ox].mean() + k(f2[iy], f2[iy])[oy].mean() - 2 * k(f1[ix], f2[iy]).mean())
    assert (lo, hi) == pytest.approx(tuple(np.quantile(vals, [0.025, 0.975])), rel=1e-9)
    assert lo < F.kid_from_features(f1, f2)[0] < hi


def test_set_distance_intervals_contain_their_estimate(no_weights):
    """Resampling inflates set distances; the reported interval is centred on the estimate."""
    from semlab.metrics.evaluate import _centred_interval

    real, fake = _sets(n=20, size=48, seed=4)
    fake = [np.clip(r + 0.002, 0, 1).astype(np.float32) for r in real]  # nearly identical sets
    row = next(r for r in evaluate(real, fake, metrics=("spectral",), n_boot=80) if r["metric"] == "spectral_distance_db")
    assert row["ci_low"] <= row["value"] <= row["ci_high"]
    lo, hi = _centred_interval([2.0, 3.0, 4.0, 5.0, 6.0], 1.0)
    assert lo == 0.0 and 0.0 < hi < 3.0  # shifted down by the bias (mean 4 - 1), clipped at 0


def test_spectral_rows_equal_the_spectral_module(no_weights):
    from semlab.metrics.spectral import high_frequency_ratio, log_spectrum_distance

    real, fake = _sets(n=10, size=48, seed=5)
    rows = {r["metric"]: r for r in evaluate(real, fake, metrics=("spectral",), n_boot=40)}
    assert rows["spectral_distance_db"]["value"] == pytest.approx(log_spectrum_distance(real, fake), rel=1e-12)
    gap = abs(high_frequency_ratio(fake) - high_frequency_ratio(real))
    assert rows["hf_ratio_gap"]["value"] == pytest.approx(gap, rel=1e-9)


def test_sem_real_features_are_cached_per_encoder_and_images(no_weights, tmp_path):
    """The real set's SEM-encoder features are extracted once: a second evaluation against
    the same real set reads them from the cache (same numbers); another encoder or other
    real images miss it."""
    from semlab.metrics.sem_encoder import EncoderConfig, train_sem_encoder

    real, fake = _sets(n=12, size=40)
    cfg = EncoderConfig(steps=2, batch_size=6, crop=32, width=4)
    enc = train_sem_encoder(real, cfg, progress=False)
    calls = []
    orig = enc.features
    enc.features = lambda imgs, **kw: calls.append(len(imgs)) or orig(imgs, **kw)
    kw = dict(metrics=("fid",), sem_encoder=enc, n_boot=20, cache_dir=tmp_path / "c")
    first = {r["metric"]: r["value"] for r in evaluate(real, fake, **kw)}
    assert calls == [12, 12]  # real, then fake
    second = {r["metric"]: r["value"] for r in evaluate(real, fake, **kw)}
    assert calls == [12, 12, 12]  # only the fakes again
    assert second["fd_sem"] == first["fd_sem"] and second["kd_sem"] == first["kd_sem"]
    evaluate(real[:-1], fake[:-1], **kw)
    assert calls[-2:] == [11, 11]  # other real images: a miss
    other = train_sem_encoder(real, EncoderConfig(steps=2, batch_size=6, crop=32, width=4, seed=1), progress=False)
    assert other.weights_key() != enc.weights_key()


def test_lpips_from_unverified_weights_is_named_so(no_weights, tmp_path, monkeypatch):
    """A random AlexNet under the official name (not the official file) gives LPIPS only
    with $SEMLAB_ALLOW_UNVERIFIED_WEIGHTS=1, and the table's metric name says so; without
    the allowance the cell is unavailable with the reason."""
    pytest.importorskip("lpips")
    from semlab.metrics.lpips import save_random_backbone

    save_random_backbone("alex", tmp_path / "w", seed=0)
    monkeypatch.setenv("SEMLAB_WEIGHTS", str(tmp_path / "w"))
    real, fake = _sets(n=6)
    monkeypatch.setenv("SEMLAB_ALLOW_UNVERIFIED_WEIGHTS", "1")
    rows = {r["metric"]: r for r in evaluate(real, fake, paired=True, metrics=("lpips",), n_boot=20)}
    assert set(rows) == {"lpips (unverified weights)"}
    r = rows["lpips (unverified weights)"]
    assert r["status"] == "ok" and r["value"] > 0
    from semlab.textfmt import md_escape  # names in Markdown tables are escaped (issue 15 item 3)

    assert f"| {md_escape('lpips (unverified weights)')} |" in to_markdown(list(rows.values()))
    assert md_escape("lpips (unverified weights)") in comparison_table({"m": list(rows.values())}).splitlines()[0]
    monkeypatch.delenv("SEMLAB_ALLOW_UNVERIFIED_WEIGHTS")
    rows = evaluate(real, fake, paired=True, metrics=("lpips",), n_boot=20)
    assert [x["metric"] for x in rows] == ["lpips"] and rows[0]["value"] is None
    assert rows[0]["status"].startswith(f"unavailable: {tmp_path / 'w' / 'alexnet-owt-7be5be79.pth'} is not the official alexnet")
