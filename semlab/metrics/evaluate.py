"""`semlab evaluate`: one tidy table of metrics for generated vs real images.

Rows are (metric, value, ci_low, ci_high, n, status, note): paired metrics (PSNR,
SSIM, MS-SSIM, LPIPS) are means over image pairs with percentile-bootstrap 95% intervals;
set metrics (FID, KID, spectral distance, high-frequency ratio) come with a bootstrap
over the images (FID and KID: the feature rows of both sets resampled); FD_sem and
KD_sem do the same in the features of semlab's SEM encoder, FID-infinity is optional.
A metric whose weights are missing has no value and says so in `status`
("unavailable: <file> not found (put it in data/weights/)"); it is never computed on
random weights. Computed from a non-official weights file (allowed by
$SEMLAB_ALLOW_UNVERIFIED_WEIGHTS=1), its name reads "fid (unverified weights)" (likewise
kid, fid_inf, lpips). Tables export to CSV, Markdown and LaTeX; `comparison_table` puts
several models side by side with the best value per column marked.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from semlab import io
from semlab.metrics.pixel import bootstrap_ci, paired_scores

FIELDS = ("metric", "value", "ci_low", "ci_high", "n", "status", "note")
# for each metric: is a higher value better?
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "ms_ssim": True, "lpips": False, "fid": False, "kid": False,
                    "fid_inf": False, "fd_sem": False, "kd_sem": False, "fd_sem_inf": False,
                    "spectral_distance_db": False, "hf_ratio_gap": False, "mask_miou": True, "mask_epe_nm": False}
SET_METRICS = ("fid", "kid", "spectral", "lpips", "psnr", "ssim", "ms_ssim")


def _row(metric, value=None, lo=None, hi=None, n=0, status="ok", note=""):
    return {"metric": metric, "value": value, "ci_low": lo, "ci_high": hi, "n": n, "status": status, "note": note}


def read_folder(folder) -> tuple[list[str], list[np.ndarray]]:
    """Gray images of a folder (sorted by name) as float32 [0, 1]."""
    from semlab.data.sources import list_images

    files = list_images(folder)
    if not files:
        raise ValueError(f"{folder}: no images found")
    return [f.stem for f in files], [io.read_image(f) for f in files]


def evaluate(real: Sequence[np.ndarray], fake: Sequence[np.ndarray], *, paired: bool = False,
             metrics: Sequence[str] = SET_METRICS, n_boot: int = 200, seed: int = 0,
             cache_dir=None, lpips_net: str = "alex", sem_encoder=None, fid_inf: bool = False,
             precision: str = "fp32", timings: dict | None = None, per_image: dict | None = None,
             names: Sequence[str] | None = None) -> list[dict]:
    """Evaluate `fake` against `real` (lists of 2-D float images in [0, 1]). With
    `paired`, fake[i] is the translation of real[i]'s mask (PSNR, SSIM, MS-SSIM, LPIPS).

    `sem_encoder` (a :class:`semlab.metrics.sem_encoder.SemEncoder`) adds FD_sem and
    KD_sem; `fid_inf` adds FID extrapolated to infinitely many images; `precision` is the
    Inception's ("bf16" ~2x faster on CPUs with AMX, ~1e-2 relative feature error).
    Inception features are extracted once per call (and, with `cache_dir`, once per real
    set across calls). `timings`, if given, receives the seconds spent per metric group;
    `per_image`, if given, receives the per-pair values of the paired metrics (arrays);
    `names` (file names of the pairs) name a pair whose images differ in size."""
    import time

    rows: list[dict] = []
    timings = {} if timings is None else timings
    per_image = {} if per_image is None else per_image
    if paired and len(real) != len(fake):
        raise ValueError(f"paired evaluation needs as many fakes as reals ({len(fake)} vs {len(real)})")
    for k, (f, r) in enumerate(zip(fake, real) if paired else ()):
        if np.shape(f) != np.shape(r):
            who = f"pair {names[k]!r}" if names is not None else f"pair {k} (0-based, in order)"
            raise ValueError(f"paired evaluation: {who}: the fake image is {'x'.join(map(str, np.shape(f)[::-1]))} px "
                             f"but the real one is {'x'.join(map(str, np.shape(r)[::-1]))} px (width x height)")
    rng = np.random.default_rng(seed)

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        return out

    if paired and ("psnr" in metrics or "ssim" in metrics):
        sc = timed("psnr_ssim", lambda: paired_scores(fake, real))
        for k in ("psnr", "ssim"):
            if k in metrics:
                per_image[k] = np.asarray(sc[k])
                m, lo, hi = bootstrap_ci(sc[k], n_boot=n_boot, seed=seed)
                rows.append(_row(k, m, lo, hi, len(real), note="mean over pairs, 95% bootstrap CI"))
    if paired and "ms_ssim" in metrics:
        from semlab.metrics.pixel import ms_ssim

        v = timed("ms_ssim", lambda: np.array([ms_ssim(f, r) for f, r in zip(fake, real)]))
        per_image["ms_ssim"] = v
        m, lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed)
        rows.append(_row("ms_ssim", m, lo, hi, len(real), note="Wang et al. 2003, mean over pairs"))
    if paired and "lpips" in metrics:
        from semlab.metrics.lpips import compute_lpips

        res = timed("lpips", lambda: compute_lpips(np.stack(fake), np.stack(real), net=lpips_net))
        if res["lpips"] is None:
            rows.append(_row("lpips", status=res["status"], n=len(real)))
        else:
            per_image["lpips"] = np.asarray(res["per_image"])
            m, lo, hi = bootstrap_ci(res["per_image"], n_boot=n_boot, seed=seed)
            rows.append(_row("lpips" + _unverified(res), m, lo, hi, len(real), note=f"{lpips_net}, mean over pairs"))
    if "fid" in metrics or "kid" in metrics:
        rows += _fid_rows(real, fake, metrics, n_boot, rng, cache_dir, fid_inf, precision, timed, seed)
    if sem_encoder is not None:
        rows += _sem_rows(real, fake, sem_encoder, n_boot, rng, fid_inf, seed, cache_dir, timed)
    if "spectral" in metrics:
        rows += timed("spectral", lambda: _spectral_rows(real, fake, n_boot, rng))
    return rows


def _centred_interval(boots, value: float, level: float = 0.95) -> tuple[float, float]:
    """95% interval of a set distance (FD, spectral distance) from bootstrap values:
    the percentile interval shifted by the bootstrap's bias estimate (mean - value).
    Resampling with replacement repeats images, which inflates a distance between sets,
    so the plain percentile interval can lie wholly above the estimate; shifted, it
    describes the estimate's sampling spread around itself. Clipped at 0 (distances)."""
    b = np.asarray(boots, float)
    lo, hi = np.quantile(b, [(1 - level) / 2, (1 + level) / 2]) - (b.mean() - value)
    return max(float(lo), 0.0), max(float(hi), 0.0)


def _fd_rows(prefix: str, fr, ff, n_boot, rng, fid_inf: bool, seed: int, note_extra: str = "") -> list[dict]:
    """FD (with a bootstrap CI over the images of both sets), KD (bootstrap CI) and
    optionally FD-infinity, on precomputed features; `prefix` names them (fid/kid or
    fd_sem/kd_sem)."""
    from semlab.metrics import fid as F

    fd_name, kd_name = ("fid", "kid") if prefix == "" else (f"fd{prefix}", f"kd{prefix}")
    n = min(len(fr), len(ff))
    value = F.fid_from_features(fr, ff)
    boots = [F.fid_from_features(fr[rng.integers(0, len(fr), len(fr))], ff[rng.integers(0, len(ff), len(ff))])
             for _ in range(max(n_boot // 10, 10))]
    lo, hi = _centred_interval(boots, value)
    bias = "biased upward at small n: compare only at equal n" + (
        f"; fewer images than the {fr.shape[1]} feature dimensions" if n <= fr.shape[1] else "")
    out = [_row(fd_name, value, float(lo), float(hi), n, note=(note_extra + "; " if note_extra else "") + bias)]
    k, _ = F.kid_from_features(fr, ff, subset_size=min(1000, n), n_subsets=100, seed=seed)
    klo, khi = F.kid_bootstrap(fr, ff, n_boot=max(n_boot // 2, 50), seed=seed)
    out.append(_row(kd_name, k, klo, khi, n, note=(note_extra + "; " if note_extra else "") +
                    f"unbiased MMD^2 (subsets of {min(1000, n)}); 95% bootstrap CI"))
    if fid_inf and len(ff) < 10:
        out.append(_row(f"{fd_name}_inf", n=n, status=f"not computed: needs at least 10 images, got {len(ff)}"))
    elif fid_inf:
        r = F.fid_infinity(fr, ff, repeats=2, seed=seed)
        out.append(_row(f"{fd_name}_inf", r["value"], None, None, n,
                        note=f"Chong & Forsyth 2020: linear fit in 1/N over N = {min(r['ns'])}..{max(r['ns'])}, "
                             f"R^2 {r['r2']:.2f}"))
    return out


def _fid_rows(real, fake, metrics, n_boot, rng, cache_dir, fid_inf, precision, timed, seed) -> list[dict]:
    from semlab.metrics import fid as F
    from semlab.weights import InvalidWeights, status

    found, where = status("pt_inception")
    n = min(len(real), len(fake))
    if not found:
        names = [m for m in ("fid", "kid") if m in metrics] + (["fid_inf"] if fid_inf else [])
        return [_row(m, status=f"unavailable: {where}", n=n) for m in names]
    try:
        model = timed("inception_load", F.load_inception)
    except InvalidWeights as exc:  # an allowed unverified file that is no valid checkpoint
        names = [m for m in ("fid", "kid") if m in metrics] + (["fid_inf"] if fid_inf else [])
        return [_row(m, status=f"unavailable: {exc}", n=n) for m in names]
    if cache_dir:
        fr = timed("inception_real", lambda: F.feature_stats_cache(
            real, model, cache_dir, F.weights_sha256(model.semlab_weights_path), precision=precision)["features"])
    else:
        fr = timed("inception_real", lambda: F.inception_features(real, model, precision=precision))
    ff = timed("inception_fake", lambda: F.inception_features(fake, model, precision=precision))
    rows = timed("fid_kid", lambda: _fd_rows("", fr, ff, n_boot, rng, fid_inf, seed))
    keep = set(metrics) | ({"fid_inf"} if fid_inf else set())
    suffix = _unverified({"verified": model.semlab_weights_verified})
    return [{**r, "metric": r["metric"] + suffix} for r in rows if r["metric"] in keep]


def _unverified(res: dict) -> str:
    """" (unverified weights)" for a metric computed from a non-official weights file
    (allowed by $SEMLAB_ALLOW_UNVERIFIED_WEIGHTS=1): its name in the table says so."""
    from semlab.weights import UNVERIFIED_LABEL

    return UNVERIFIED_LABEL if res.get("verified") is False else ""


def _sem_rows(real, fake, encoder, n_boot, rng, fid_inf, seed, cache_dir=None, timed=None) -> list[dict]:
    """FD_sem / KD_sem in the SEM encoder's features: named apart from FID, with the
    encoder's identity in the note. The real set's features are cached like Inception's
    (key: images' sha256 and the encoder's weights)."""
    from semlab.metrics import fid as F

    timed = timed or (lambda name, fn: fn())
    if cache_dir:
        fr = timed("sem_real", lambda: F.feature_stats_cache(
            real, None, cache_dir, "sem-encoder:" + encoder.weights_key(), extract=encoder.features)["features"])
    else:
        fr = timed("sem_real", lambda: encoder.features(real))
    ff = timed("sem_fake", lambda: encoder.features(fake))
    return timed("fd_kd_sem", lambda: _fd_rows("_sem", fr, ff, n_boot, rng, fid_inf, seed,
                 note_extra=f"SEM encoder {(encoder.sha256 or 'unsaved')[:12]}, not FID"))


def _spectral_rows(real, fake, n_boot, rng) -> list[dict]:
    """Spectral distance and high-frequency gap. Each image's radial spectrum is
    computed once; the bootstrap resamples those spectra (the same numbers as
    `log_spectrum_distance` on resampled image sets, without repeating the FFTs)."""
    from semlab.metrics.spectral import radial_power_spectrum

    real, fake = list(real), list(fake)
    f, _ = radial_power_spectrum(real[0])
    sr = np.stack([radial_power_spectrum(im)[1] for im in real])
    sf = np.stack([radial_power_spectrum(im)[1] for im in fake])
    if sr.shape[1] != sf.shape[1]:
        raise ValueError("the two sets need images of the same size")

    def dist(a, b):
        d = 10 * np.log10(np.maximum(a.mean(0), 1e-30)) - 10 * np.log10(np.maximum(b.mean(0), 1e-30))
        return float(np.sqrt(np.mean(d ** 2)))

    d = dist(sr, sf)
    boots = [dist(sr[rng.integers(0, len(sr), len(sr))], sf[rng.integers(0, len(sf), len(sf))])
             for _ in range(max(n_boot // 4, 20))]
    lo, hi = _centred_interval(boots, d)
    ring = 2 * np.pi * f
    hr = float((sr.mean(0) * ring)[f > 0.25].sum() / max((sr.mean(0) * ring).sum(), 1e-30))
    hf = float((sf.mean(0) * ring)[f > 0.25].sum() / max((sf.mean(0) * ring).sum(), 1e-30))
    return [_row("spectral_distance_db", d, lo, hi, min(len(real), len(fake)),
                 note="RMS difference of mean log power spectra"),
            _row("hf_ratio_gap", abs(hf - hr), None, None, min(len(real), len(fake)),
                 note=f"share of power above 0.25 cyc/px: real {hr:.3f}, fake {hf:.3f}")]


# ----------------------------------------------------------------------- exports

def _fmt(v, digits=4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


TABLE_SUFFIXES = (".csv", ".md", ".tex")


def check_table_paths(paths, *, overwrite: bool = False) -> None:
    """Before computing anything: every table path has a known suffix, and none exists
    unless `overwrite` (FileExistsError naming them; `semlab evaluate` never overwrites
    without --overwrite)."""
    ps = [Path(p) for p in paths]
    bad = [str(p) for p in ps if p.suffix not in TABLE_SUFFIXES]
    if bad:
        raise ValueError(f"{', '.join(bad)}: table format by suffix: .csv, .md or .tex")
    existing = [str(p) for p in ps if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}: "
                              "semlab evaluate never overwrites a table; choose another --out, or pass "
                              "--overwrite (overwrite=True) to replace it")


def write_table(rows: list[dict], path, *, overwrite: bool = False) -> Path:
    """CSV, Markdown or LaTeX by the file's suffix (.csv, .md, .tex), atomically. An
    existing file is refused (FileExistsError) unless `overwrite`."""
    p = Path(path)
    check_table_paths([p], overwrite=overwrite)
    if p.suffix == ".csv":
        return io.write_csv_atomic(p, rows, list(FIELDS))
    if p.suffix == ".md":
        return io.write_text_atomic(p, to_markdown(rows) + "\n")
    if p.suffix == ".tex":
        return io.write_text_atomic(p, to_latex(rows) + "\n")
    raise ValueError(f"{p}: table format by suffix: .csv, .md or .tex")


def _cell(r) -> str:
    if r["value"] is None:
        return r["status"]
    ci = f" [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if r["ci_low"] is not None else ""
    return f"{_fmt(r['value'])}{ci}"


def to_markdown(rows: list[dict]) -> str:
    """Rows as a Markdown table; names, notes and reasons are escaped (`md_escape`), so a
    `|`, a backtick or HTML in them can neither split a cell nor become markup."""
    from semlab.textfmt import md_escape

    lines = ["| metric | value [95% CI] | n | note |", "|---|---|---|---|"]
    lines += [f"| {md_escape(r['metric'])} | {md_escape(r['status']) if r['value'] is None else _cell(r)} "
              f"| {r['n']} | {md_escape(r['note'] or '')} |" for r in rows]
    return "\n".join(lines)


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        s = s.replace(a, b)
    return s


def to_latex(rows: list[dict]) -> str:
    lines = [r"\begin{tabular}{lrr}", r"\hline", r"metric & value [95\% CI] & $n$ \\", r"\hline"]
    lines += [f"{_tex(r['metric'])} & {_tex(_cell(r))} & {r['n']} \\\\" for r in rows]
    lines += [r"\hline", r"\end{tabular}"]
    return "\n".join(lines)


def comparison_table(results: dict[str, list[dict]], fmt: str = "markdown", reference: Sequence[str] = ()) -> str:
    """Models as rows, metrics as columns, value [CI]; the best value of each column in
    bold (Markdown) or \\textbf (LaTeX); unavailable cells say so. Rows named in
    `reference` (e.g. the noise-free upper bound) are shown but never marked best. In
    Markdown, model and metric names and reasons are escaped (`md_escape`)."""
    from semlab.textfmt import md_escape

    esc = md_escape if fmt == "markdown" else str
    metrics = []
    for rows in results.values():
        metrics += [r["metric"] for r in rows if r["metric"] not in metrics]
    by = {m: {name: next((r for r in rows if r["metric"] == m), None) for name, rows in results.items()}
          for m in metrics}
    best = {}
    for m in metrics:
        vals = {n: r["value"] for n, r in by[m].items()
                if r is not None and r["value"] is not None and n not in reference}
        if vals and m in HIGHER_IS_BETTER:
            pick = max if HIGHER_IS_BETTER[m] else min
            best[m] = pick(vals, key=vals.get)
    bold = (lambda s: f"**{s}**") if fmt == "markdown" else (lambda s: f"\\textbf{{{s}}}")
    header = ["model"] + [esc(m) for m in metrics]
    body, notes = [], []  # a cell without a value points to a note below the table
    for name in results:
        cells = [esc(name)]
        for m in metrics:
            r = by[m][name]
            if r is not None and r["value"] is None:
                if r["status"] not in notes:
                    notes.append(r["status"])
                c = f"{esc(r['status'].split(':')[0])} [{notes.index(r['status']) + 1}]"
            else:
                c = "-" if r is None else _cell(r)
            cells.append(bold(c) if best.get(m) == name else c)
        body.append(cells)
    if fmt == "markdown":
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(c) + " |" for c in body]
        if notes:
            out += [""] + [f"[{i}] {md_escape(n)}  " for i, n in enumerate(notes, 1)]
        return "\n".join(out)
    if fmt == "latex":
        out = [r"\begin{tabular}{l" + "r" * len(metrics) + "}", r"\hline",
               " & ".join(_tex(h) for h in header) + r" \\", r"\hline"]
        out += [" & ".join(c if c.startswith("\\textbf") else _tex(c) for c in row) + r" \\" for row in body]
        out += [r"\hline", r"\end{tabular}"]
        out += [_tex(f"[{i}] {n}") + r" \\" for i, n in enumerate(notes, 1)]
        return "\n".join(out)
    raise ValueError(f"format {fmt!r}; valid: markdown, latex")
