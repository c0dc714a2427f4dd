"""`semlab fit-sim`: simulator parameters estimated from real SEM frames (issue 17 item 2).

`fit_sim(frames, kind=...)` sees pixels only (no manifest, no generator parameters) and
returns a `FitResult` whose `params` are keys of the simulator (`semlab.data.simulate`),
in nm and gray levels in [0, 1], ready for a preset file (`semlab.data.presetfile`).
Every quantity is estimated per frame; the point value is the mean over frames and its
uncertainty a bootstrap over frames (`uncertainty[key] = (std, ci_low, ci_high)`).

What is estimated, and how:

* **Geometry.** Pitch from the FFT peak (`metrology.fft_pitch`); for lines the left and
  right edges of every bright line in every row (`metrology.line_edges`, bright phase =
  the simulator's pattern), CD and `width_frac = CD / pitch` (CD corrected by the edge
  model's offset between the 50% crossing and the true edge); for contacts the holes of
  `metrology.measure_contacts`, `width_frac = diameter / pitch`.
* **Edge profile.** The image is sampled across every detected edge (lines: along the
  row, each edge trace smoothed along the edge by 2 rows first so the image noise of a
  row does not align its own profile; contacts: along radii of the fitted circle),
  averaged into one profile from the middle of the space (hole) to the middle of the line
  (film), and the simulator's 1-D edge model fitted to it by least squares: trench and
  plateau levels, sidewall ramp, rim (amplitude, width, offset), halo (depth, decay
  length), all blurred by a Gaussian. Sidewall, rim width and rim offset are not
  separable from the blur by a profile (a Gaussian of the rim width blurred by the beam is
  a Gaussian of the summed variances), so they are held at priors (`priors=`) and the
  blur absorbs the rest; the blur is corrected for the residual jitter of the smoothed
  edge traces and for the linear interpolation of the sampling (1/6 px^2).
  `scan_asymmetry` from the rim amplitudes of left- and right-facing edges.
* **Noise** (`noise_sigma` of `semlab.noise` and its 2-D noise spectrum S): the mean of S
  along the scan (x) is fitted as white shot noise plus detector noise low-passed along
  the scan by a Gaussian of `noise_corr_px` (the simulator's amplifier model, with its exact
  sampled kernel); shot variance A maps to `dose = mean signal / A`, detector variance B
  to `detector_sigma = sqrt(B)`. Scan-line offsets (`scanline_sigma`) from the excess
  power of the fx = 0 column of the periodogram over the noise spectrum. The
  poisson-gaussian level-vs-signal curve (var = a * signal + b) is measured as well, from
  a high-pass residual binned by local mean (`noise_vs_signal`, for the figures).
* **LER** (lines): the edge PSD with the noise floor subtracted (`metrology.unbiased_sigma`),
  and the correlation length from the floor-subtracted PSD fitted with the simulator's
  1-D Palasantzas spectrum (exponent `ler_alpha` of the base preset).
* **Roughness, v4** (lines): the row displacement shared by all edges (scan wander, from 20
  lines up) is removed first and fitted (`wander_nm`, `wander_corr_nm`: `fit_noise.wander_fit`),
  the lines' `tilt` (px per row, the median slope of the edges) likewise; `ler_across_nm`
  from the anticorrelation of a space's two edges, line placement roughness (`lpr_sigma_nm`,
  `lpr_corr_nm`, `semlab.data.placement`) from the covariance and cross-spectrum of a line's
  two edges; `corner_radius_nm` is a fifth of the CD (a larger corner blur distorts dense
  lines). **Noise, v4**: when most of it is correlated along the scan, all of it goes through
  one kernel (`scan_corr_px`), its shot
  share from the level-vs-signal curve; `bit_depth` (8, 16 or 0) from the gray levels.
* **Charging / brightness gradient**: a plane fitted to the plateau pixels far from
  edges, in frame coordinates [-0.5, 0.5]; `charging_amp` is its range across the frame.

* **Closed loop** (`refine` steps, default 1; the packaged presets used 2): frames simulated
  with the fit are measured by the same estimators and each parameter corrected by the
  real-minus-simulated difference (levels) or ratio (widths, lengths, noise variances), so
  the estimators' own biases cancel.
* **Frame looks** (2+ frames, `FitResult.looks`, `semlab.data.looks`): the frame-level
  parameters (`LOOK_FIT`: levels, edge profile, blur, noise, bit depth, charging) of each
  frame, from its own estimates, refined in the closed loop against that frame alone with
  the pooled geometry. The preset draws one look per simulated frame, so a frame's noise,
  contrast and blur come together as on one real frame; geometry keeps the pooled ranges.
* Contact frames showing dark holes and bright pillars are not one look: the majority
  polarity is fitted and the others are named in a note.

Pixel sizes of the frames within 2% count as one (median; a note says so); more than 2%
apart they are refused with the list. A frame with no detectable structure gives a
ValueError saying what could not be estimated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import ndimage, optimize

from semlab.data.fit_noise import noise_fit, noise_vs_signal, wander_fit

__all__ = ["KINDS", "PRIORS", "Frame", "FitResult", "load_frames", "fit_sim", "edge_model", "render_like"]

KINDS = {"line-space": "lines", "contacts": "contacts"}
SAME_SIZE = 0.02
# not separable from the blur by an edge profile: held at these values (nm)
PRIORS = {"sidewall_nm": 2.25, "rim_width_nm": 2.5, "rim_offset_nm": 1.0}
_TRACE_SMOOTH = 2.0   # rows: edge traces are smoothed along the edge before the profile
_STEP = 0.25          # px: sampling step of the mean profile
_MIN_PEAK_SNR = 8.0   # the FFT peak over the median power at its radius: below, no structure
# keys whose frame-to-frame spread is real (levels, geometry, blur): a range when it exceeds this
# (not the noise: dose and detector sigma drawn independently from their ranges would give
# noise levels no frame has; the noise parameters come from the frame-mean variances)
RANGE_KEYS = ("pattern_level", "background_level", "hole_level", "width_frac", "psf_sigma_nm", "scan_corr_px")
RANGE_SPREAD = 0.10


@dataclass
class Frame:
    name: str
    image: np.ndarray        # float64 (H, W), data bar cropped
    pixel_nm: float | None
    sha256: str | None = None


@dataclass
class FitResult:
    """`params`: simulator parameters (nm, gray [0, 1]); `per_frame`: the estimates of each
    frame; `uncertainty[key]`: (std, ci_low, ci_high) of a bootstrap over frames;
    `profile`: mean edge profile (t_nm, value, model) pooled over frames and per frame;
    `noise`: spectrum fit and noise-vs-signal curve; `ler_psd`: (f per nm, psd nm^2 nm)."""

    kind: str
    pixel_nm: float
    params: dict[str, Any]
    per_frame: list[dict[str, float]]
    uncertainty: dict[str, tuple[float, float, float]]
    sources: list[dict[str, Any]]
    profile: dict[str, Any] = field(default_factory=dict)
    noise: dict[str, Any] = field(default_factory=dict)
    ler_psd: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    looks: list[dict[str, Any]] = field(default_factory=list)  # [{"params", "source"}] per frame (2+ frames)

    @property
    def n_frames(self) -> int:
        return len(self.per_frame)

    def summary(self) -> dict[str, Any]:
        """JSON-able: params, uncertainties, per-frame values, sources and notes."""
        return {"kind": self.kind, "pixel_nm": self.pixel_nm, "n_frames": self.n_frames, "params": self.params,
                "uncertainty": {k: list(v) for k, v in self.uncertainty.items()}, "per_frame": self.per_frame,
                "sources": self.sources, "notes": self.notes, "looks": self.looks}


# --------------------------------------------------------------------------- frames


def load_frames(src, *, pixel_nm: float | None = None, split: Sequence[str] | None = None
                ) -> tuple[list[Frame], float, list[str]]:
    """Frames of a folder, an image file, a list of files or a list of arrays (which need
    `pixel_nm`), data bars cropped (`semlab.data.sources.crop_databar`). `split` keeps the
    frames of those stored splits (`semlab.data.samples.import_splits`). Returns (frames,
    pixel size nm, notes); ValueError naming the frames for unknown or disagreeing pixel sizes."""
    from semlab import io
    from semlab.data import sources

    notes: list[str] = []
    frames: list[Frame] = []
    items = list(src) if isinstance(src, (list, tuple)) else [src]
    if any(isinstance(x, np.ndarray) for x in items):
        if split:
            raise ValueError("fit-sim: a split applies to files, not to arrays")
        for i, x in enumerate(items):
            a = np.asarray(x, dtype=np.float64)
            if a.ndim != 2 or min(a.shape) < 32:
                raise ValueError(f"fit-sim: image {i} must be a 2-D array of at least 32x32 px, got {a.shape}")
            if not np.isfinite(a).all():
                raise ValueError(f"fit-sim: image {i} contains NaN or infinity")
            frames.append(Frame(f"image-{i}", a, None))
    else:
        files: list[Path] = []
        roots: list[Path] = []
        for x in items:
            found = sources.list_images(Path(x))  # FileNotFoundError / ValueError naming the folder
            files += found
            roots.append(Path(x))
        if split:
            from semlab.data.samples import import_splits

            keep = []
            for root in roots:
                fs = sources.list_images(root)
                ids = {f: (f.relative_to(root).as_posix() if root.is_dir() else f.name) for f in fs}
                of = import_splits(ids, root)
                keep += [f for f in fs if of.get(ids[f]) in split]
            if not keep:
                raise ValueError(f"fit-sim: no frame of {', '.join(map(str, roots))} in split(s) {', '.join(split)}")
            notes.append(f"frames of split(s) {', '.join(split)}: {', '.join(f.name for f in keep)}")
            files = keep
        for f in files:
            img = io.read_image(f)
            img, bar = sources.crop_databar(img, "auto")
            if bar is not None:
                notes.append(f"{f.name}: data bar cropped at row {bar}")
            if min(img.shape) < 32:
                raise ValueError(f"fit-sim: {f}: {img.shape[0]}x{img.shape[1]} px is too small (at least 32x32)")
            px = io.read_image_meta(f).get("pixel_size_nm")
            frames.append(Frame(f.name, np.asarray(img, dtype=np.float64), px, io.sha256_file(f)))
    if pixel_nm is not None:
        if not (math.isfinite(float(pixel_nm)) and float(pixel_nm) > 0):
            raise ValueError(f"fit-sim: pixel size must be a positive number of nm, got {pixel_nm!r}")
        known = [f for f in frames if f.pixel_nm and abs(f.pixel_nm / pixel_nm - 1) > SAME_SIZE]
        if known:
            notes.append(f"--pixel-nm {pixel_nm:g} overrides the pixel size of {len(known)} frame(s) "
                         f"(e.g. {known[0].name}: {known[0].pixel_nm:.4g} nm)")
        for f in frames:
            f.pixel_nm = float(pixel_nm)
        return frames, float(pixel_nm), notes
    unknown = [f.name for f in frames if not f.pixel_nm]
    if unknown:
        raise ValueError(f"fit-sim: pixel size unknown for {len(unknown)} frame(s) ({', '.join(unknown[:5])}): "
                         f"give --pixel-nm")
    sizes = np.array([f.pixel_nm for f in frames], dtype=np.float64)
    if sizes.max() / sizes.min() > 1 + SAME_SIZE:
        lst = ", ".join(f"{f.name}: {f.pixel_nm:.4g} nm" for f in frames)
        raise ValueError(f"fit-sim: pixel sizes differ by more than {SAME_SIZE:.0%} "
                         f"({sizes.min():.4g}-{sizes.max():.4g} nm): {lst}; fit each size on its own")
    px = float(np.median(sizes))
    if sizes.max() > sizes.min():
        notes.append(f"pixel sizes {sizes.min():.4g}-{sizes.max():.4g} nm are within {SAME_SIZE:.0%}: "
                     f"treated as one, {px:.4g} nm (their median)")
    return frames, px, notes


# --------------------------------------------------------------------------- edge model


def edge_model(t_px: np.ndarray, *, low: float, high: float, sidewall: float, rim_amp: float, rim_width: float,
               rim_offset: float, halo_amp: float, halo_width: float, blur: float, shift: float = 0.0
               ) -> np.ndarray:
    """The simulator's 1-D edge (steps 4, 5 and 7 of `semlab.data.simulate`) at distances
    `t_px` (px, positive inside the pattern), edge at t = -shift: the ramp from `low` to
    `high` of width `sidewall`, the rim Gaussian, the exponential halo outside, all blurred
    by a Gaussian of sigma `blur` px (numerically, on a 0.05-px grid)."""
    t = np.asarray(t_px, dtype=np.float64) + shift
    pad = 5 * max(blur, 0.05) + 1
    g = np.arange(t.min() - pad, t.max() + pad, 0.05)
    sig = low + (high - low) * (np.clip(0.5 + g / sidewall, 0, 1) if sidewall > 1e-3 else (g > 0).astype(float))
    sig = sig + rim_amp * np.exp(-0.5 * ((g - rim_offset) / max(rim_width, 0.3)) ** 2)
    sig = sig - halo_amp * np.where(g < 0, np.exp(np.minimum(g, 0) / max(halo_width, 0.3)), 0.0)
    if blur > 1e-3:
        sig = ndimage.gaussian_filter1d(sig, blur / 0.05, mode="nearest")
    return np.interp(t, g, sig)


def _fit_profile(t: np.ndarray, v: np.ndarray, priors_px: dict[str, float]) -> dict[str, float]:
    """Least-squares fit of `edge_model` to a mean profile (t px, positive inside the pattern)."""
    inside, outside = v[t > 0.6 * t.max()], v[t < 0.6 * t.min()]
    lo0, hi0 = float(np.median(outside)), float(np.median(inside))
    names = ["low", "high", "rim_amp", "halo_amp", "halo_width", "blur", "shift"]
    span = max(abs(hi0 - lo0), 1e-3)
    x0 = [lo0, hi0, 0.1 * span, 0.05 * span, 4.0, 2.0, 0.0]
    lb = [-0.5, -0.5, 0.0, 0.0, 0.3, 0.05, -0.5 * (t.max() - t.min()) / 2]
    ub = [1.5, 1.5, 1.0, 1.0, 60.0, 40.0, 0.5 * (t.max() - t.min()) / 2]
    fixed = {"sidewall": priors_px["sidewall_nm"], "rim_width": priors_px["rim_width_nm"],
             "rim_offset": priors_px["rim_offset_nm"]}

    def resid(x):
        return edge_model(t, **dict(zip(names, x)), **fixed) - v

    best = None
    for blur0 in (1.0, 3.0, 8.0):  # a few starts: the blur / halo trade-off has local minima
        x0[5] = blur0
        r = optimize.least_squares(resid, x0, bounds=(lb, ub), x_scale="jac", max_nfev=400)
        if best is None or r.cost < best.cost:
            best = r
    out = dict(zip(names, (float(a) for a in best.x)))
    out.update(fixed)
    out["rms"] = float(np.sqrt(np.mean(best.fun ** 2)))
    return out


def _rim_amp_given(t: np.ndarray, v: np.ndarray, fit: dict[str, float]) -> float:
    """The rim amplitude that best fits profile `v` with every other edge parameter of `fit`."""
    kw = {k: fit[k] for k in ("low", "high", "sidewall", "rim_width", "rim_offset", "halo_amp", "halo_width",
                                "blur", "shift")}
    base = edge_model(t, rim_amp=0.0, **kw)
    unit = edge_model(t, rim_amp=1.0, **kw) - base
    den = float((unit * unit).sum())
    return float(((v - base) * unit).sum() / den) if den > 0 else 0.0


# --------------------------------------------------------------------------- per frame


def _smooth_trace(e: np.ndarray, max_missing: float = 0.2) -> np.ndarray | None:
    bad = ~np.isfinite(e)
    if bad.mean() > max_missing or (~bad).sum() < 8:
        return None
    i = np.arange(len(e))
    f = e.copy()
    if bad.any():
        f[bad] = np.interp(i[bad], i[~bad], e[~bad])
    return f


def _plane_range(img: np.ndarray, sel: np.ndarray) -> float:
    """Range across the frame of a plane fitted to img[sel] (frame coordinates -0.5..0.5)."""
    h, w = img.shape
    yy, xx = np.nonzero(sel)
    if len(yy) < 100:
        return 0.0
    if len(yy) > 200_000:
        k = np.linspace(0, len(yy) - 1, 200_000).astype(np.int64)
        yy, xx = yy[k], xx[k]
    A = np.stack([np.ones(len(yy)), yy / h - 0.5, xx / w - 0.5], axis=1)
    coef, *_ = np.linalg.lstsq(A, img[yy, xx], rcond=None)
    return float(np.hypot(coef[1], coef[2]))


def _ler_fit(f: np.ndarray, psd: np.ndarray, floor: float, alpha: float, blur_px: float) -> tuple[float, float]:
    """(sigma px, correlation length px) of the edge roughness: the floor-subtracted edge PSD
    fitted in log space with K (1 + (2 pi f xi)^2)^-(0.5 + alpha) exp(-(2 pi f blur)^2) over
    the bins above 5% of its peak (the beam blur averages roughness along the edge over
    about its sigma: the fit undoes it), sigma^2 = the unattenuated model summed over the
    bins f > 0 (Parseval, as `metrology.unbiased_sigma`). NaNs if too few bins qualify."""
    p = psd - floor
    L = 2 * (len(f) - 1)
    sel = (f > 0) & (f <= 0.3) & (p > 0.05 * max(p[f > 0].max(), 1e-30))
    if sel.sum() < 3:
        return float("nan"), float("nan")
    att = np.exp(-(2 * np.pi * f * blur_px) ** 2)
    best = None
    for xi in np.geomspace(0.3, 300, 160):
        g = np.log((1 + (2 * np.pi * f[sel] * xi) ** 2) ** -(0.5 + alpha) * att[sel])
        lk = float(np.mean(np.log(p[sel]) - g))
        err = float(((np.log(p[sel]) - g - lk) ** 2).sum())
        if best is None or err < best[0]:
            best = (err, float(xi), lk)
    _, xi, lk = best
    w = np.full(len(f), 2.0)
    w[-1] = 1.0
    model = np.exp(lk) * (1 + (2 * np.pi * f * xi) ** 2) ** -(0.5 + alpha)
    var = float((w[1:] * model[1:]).sum() / L)
    return math.sqrt(var), xi


def _edge_pairs(tr: np.ndarray, kth: list[tuple[int, str]], sigma: float, cd: float, gap: float
                ) -> tuple[float, float, np.ndarray]:
    """(`ler_across` px, placement variance px^2, placement cross-spectrum) from neighbouring
    edges. In the simulator the two edges of a space (distance `gap`) move against each other
    with correlation -exp(-d^2 / (4 s^2)) (one roughness field, opposite normals): s = gap /
    (2 sqrt(-ln(-rho))), rho = cov / sigma^2 (noise-free with the unbiased sigma), -rho
    clipped to [0.02, 0.95], so independent edges give s = gap / 3.96. The two edges of a
    line share its placement roughness u on top (`semlab.data.placement`): cov = var(u) -
    (sigma^2 - var(u)) rho(cd), solved for var(u) >= 0; its spectrum is the mean
    cross-spectrum of the line's edges."""
    i = np.arange(tr.shape[1])
    A = np.stack([np.ones(len(i)), i - i.mean()], axis=1)
    r = tr - (A @ np.linalg.lstsq(A, tr.T, rcond=None)[0]).T
    pos = {key: j for j, key in enumerate(kth)}
    line = [(pos[(k, "L")], pos[(k, "R")]) for k, e in kth if e == "L" and (k, "R") in pos]
    space = [(pos[(k, "R")], pos[(k + 1, "L")]) for k, e in kth if e == "R" and (k + 1, "L") in pos]
    cross = np.zeros(tr.shape[1] // 2 + 1)
    if not (sigma > 0 and space and line):
        return float("nan"), 0.0, cross
    rho = float(np.clip(-np.mean([(r[x] * r[y]).mean() for x, y in space]) / sigma ** 2, 0.02, 0.95))
    s = max(gap, 1.0) / (2 * math.sqrt(-math.log(rho)))
    rc = math.exp(-cd ** 2 / (4 * s * s))
    var_u = max((float(np.mean([(r[x] * r[y]).mean() for x, y in line])) + sigma ** 2 * rc) / (1 + rc), 0.0)
    fx = np.fft.rfft(r, axis=1)
    cross = np.mean([np.real(fx[x] * np.conj(fx[y])) for x, y in line], axis=0) / tr.shape[1]
    return s, var_u, cross


def _lines_frame(fr: Frame, px: float, priors_px: dict[str, float], alpha: float) -> dict[str, Any]:
    from semlab import metrology

    img = fr.image
    pr = metrology.fft_pitch(img)
    if pr.peak_snr < _MIN_PEAK_SNR:
        raise ValueError(f"fit-sim: {fr.name}: no periodic line structure (FFT peak {pr.peak_snr:.1f}x the "
                         f"background, need {_MIN_PEAK_SNR:g}): could not estimate pitch, edges, edge profile, "
                         f"blur or LER")
    try:
        le = metrology.line_edges(img, polarity="bright")
    except ValueError as e:
        raise ValueError(f"fit-sim: {fr.name}: no line edges detected ({e}): could not estimate the edge "
                         f"profile, blur, CD or LER") from None
    x = img.T if le.transposed else img
    rows = x.shape[0]
    traces, cds, kth = [], [], []
    for k in range(le.n_lines):
        a, b = _smooth_trace(le.left[k]), _smooth_trace(le.right[k])
        if a is not None:
            traces.append(("L", a))
            kth.append((k, "L"))
        if b is not None:
            traces.append(("R", b))
            kth.append((k, "R"))
        if a is not None and b is not None:
            cds.append(float(np.mean(b - a)))
    if len(traces) < 2 or not cds:
        raise ValueError(f"fit-sim: {fr.name}: edges found in too few rows: could not estimate the edge "
                         f"profile, blur, CD or LER")
    pitch = float(pr.pitch_px)
    cd = float(np.mean(cds))
    # LER without the scan wander: the displacement shared by all edges of a row (stage or
    # beam drift, not roughness) is removed first; with a handful of edges it is kept
    tr = np.stack([t for _, t in traces])
    wander, wander_corr = 0.0, float("nan")
    i = np.arange(tr.shape[1])
    A = np.stack([np.ones(len(i)), i - i.mean()], axis=1)
    coef = np.linalg.lstsq(A, tr.T, rcond=None)[0]
    res, tilt = tr - (A @ coef).T, float(np.median(coef[1]))  # tilt of the lines: px per row
    if len(tr) >= 40:  # >= 20 lines: the row mean holds < 5% of a line's own placement roughness
        cm = res.mean(axis=0)
        wander, wander_corr = wander_fit(cm, res - cm)  # simulated as a row shift (v4)
        tr = tr - cm[None, :]
    ler_u, ler_b, floor = metrology.unbiased_sigma(tr)
    f, psd = metrology.edge_psd(tr)
    across, var_p, cross = _edge_pairs(tr, kth, ler_u, cd, pitch - cd)
    # mean profile: from mid-space (-gap/2) to mid-line (+cd/2), edges aligned on smoothed traces
    half_in, half_out = 0.5 * cd, 0.5 * max(pitch - cd, 1.0)
    t = np.arange(-half_out, half_in + 1e-9, _STEP)
    r_idx = np.arange(rows)
    prof = {"L": [], "R": []}
    for side, tr in traces:
        ts = ndimage.gaussian_filter1d(tr, _TRACE_SMOOTH, mode="nearest")
        sgn = 1.0 if side == "L" else -1.0
        cols = ts[:, None] + sgn * t[None, :]
        vals = ndimage.map_coordinates(x, [np.repeat(r_idx[:, None], len(t), 1), cols], order=1, mode="nearest")
        prof[side].append(vals.mean(axis=0))
    pl, prr = np.mean(prof["L"], axis=0), np.mean(prof["R"], axis=0) if prof["R"] else None
    v = pl if prr is None else 0.5 * (pl + prr)
    fit = _fit_profile(t, v, priors_px)
    # residual jitter of the smoothed traces (noise part of the edge variance) and the
    # linear interpolation (1/6 px^2) widen the mean profile: removed from the blur
    gk = np.exp(-0.5 * (np.arange(-8, 9) / _TRACE_SMOOTH) ** 2)
    gk /= gk.sum()
    jitter_var = max(ler_b ** 2 - ler_u ** 2, 0.0) * float((gk ** 2).sum())
    blur = math.sqrt(max(fit["blur"] ** 2 - jitter_var - 1.0 / 6.0, 0.04))
    ler_m = _ler_fit(f, psd, floor, alpha, blur)[0]  # all roughness; the edges' own: less the placement
    corr = _ler_fit(f, psd - (cross if var_p > 0 else 0.0), floor, alpha, blur)[1]
    lpr_m, lpr_corr = _ler_fit(f, cross, 0.0, alpha, blur) if var_p > 0 else (0.0, float("nan"))
    if var_p > 0:  # its correlation length from the long waves only (the cross-spectrum is noisy above)
        lo = f <= 1 / 16
        lpr_corr = _ler_fit(f[lo], cross[lo], 0.0, alpha, blur)[1]
    if math.isfinite(lpr_m):  # the model sum undoes the detrending (as for LER), by at most 1.5x
        var_p = float(np.clip(lpr_m ** 2, var_p, 1.5 * var_p))
    ler_e = math.sqrt(max(ler_u ** 2 - var_p, 0.0))
    ler_m = math.sqrt(max(ler_m ** 2 - var_p, 0.0)) if math.isfinite(ler_m) else ler_m
    asym = 0.0
    if prr is not None:
        ra, rb = _rim_amp_given(t, pl, fit), _rim_amp_given(t, prr, fit)
        if ra + rb > 1e-3 and fit["rim_amp"] > 0.02 * abs(fit["high"] - fit["low"]):
            asym = float((ra - rb) / (ra + rb))
            if le.transposed:  # rows were columns: the scan (x) direction is across rows
                asym = 0.0
    # plateau pixels away from the edges: charging gradient and the plateau spread
    thr = le.threshold
    sm = ndimage.gaussian_filter(x, 1.5)
    core = ndimage.binary_erosion(sm > thr, iterations=max(2, int(0.25 * cd)))
    trench = ndimage.binary_erosion(sm <= thr, iterations=max(2, int(0.25 * (pitch - cd))))
    charge = 0.5 * (_plane_range(x, core) + _plane_range(x, trench))
    return {"pitch_nm": pitch * px, "cd_nm": (cd + 2 * fit["shift"]) * px,
            "width_frac": float(np.clip((cd + 2 * fit["shift"]) / pitch, 0.02, 0.98)),
            "background_level": fit["low"], "pattern_level": fit["high"],
            "plateau_spread": float(x[core].std()) if core.any() else float("nan"),
            "trench_spread": float(x[trench].std()) if trench.any() else float("nan"),
            "rim_amp": fit["rim_amp"], "halo_amp": fit["halo_amp"], "halo_width_nm": fit["halo_width"] * px,
            "psf_sigma_nm": blur * px, "profile_blur_nm": fit["blur"] * px, "scan_asymmetry": asym,
            "ler_sigma_nm": (ler_m if math.isfinite(ler_m) else ler_e) * px, "ler_sigma_floor_nm": ler_e * px,
            "lpr_sigma_nm": math.sqrt(var_p) * px, "lpr_corr_nm": lpr_corr * px,
            "ler_sigma_biased_nm": ler_b * px,
            "ler_corr_nm": corr * px if math.isfinite(corr) else float("nan"),
            "ler_across_nm": across * px, "wander_nm": wander * px, "wander_corr_nm": wander_corr * px, "tilt": tilt,
            "charging_amp": charge, "vertical": 0.0 if le.transposed else 1.0,
            "_profile": (t * px, v, edge_model(t, **{k: fit[k] for k in fit if k != "rms"})),
            "_ler_psd": (f / px, (psd - floor) * px ** 3, floor * px ** 3), "_edges": len(traces)}


def _contacts_frame(fr: Frame, px: float, priors_px: dict[str, float]) -> dict[str, Any]:
    from semlab import metrology

    img = fr.image
    pr = metrology.fft_pitch(img)
    cm = metrology.measure_contacts(img, smooth_px=1.5)
    if pr.peak_snr < _MIN_PEAK_SNR or len(cm.contacts) < 4:
        raise ValueError(f"fit-sim: {fr.name}: no contact array detected ({len(cm.contacts)} contact(s), FFT peak "
                         f"{pr.peak_snr:.1f}x the background): could not estimate pitch, diameter, edge profile "
                         f"or blur")
    from scipy.spatial import cKDTree

    # pitch: the median nearest-neighbour distance of the contacts (the FFT peak of a square
    # lattice of round holes may be its diagonal)
    cen = np.array([[c.row, c.col] for c in cm.contacts])
    dist, _ = cKDTree(cen).query(cen, k=2)
    pitch = float(np.median(dist[:, 1]))
    diam = float(np.median(cm.diameters))
    keep = [c for c in cm.contacts if abs(c.diameter / diam - 1) < 0.3]
    R = float(np.median([c.fit_radius for c in keep]))
    gap = max(pitch - 2 * R, 2.0)
    t = np.arange(-0.8 * R, 0.5 * gap + 1e-9, _STEP)  # positive outwards, into the film
    ang = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    vals = []
    for c in keep:
        rr = c.fit_radius + t
        ys = c.row + np.outer(np.sin(ang), rr)
        xs = c.col + np.outer(np.cos(ang), rr)
        vals.append(ndimage.map_coordinates(img, [ys, xs], order=1, mode="nearest").mean(axis=0))
    v = np.mean(vals, axis=0)
    fit = _fit_profile(t, v, priors_px)
    sig_r = float(np.median([c.radial_sigma for c in keep]))
    jitter_var = 0.0  # circles are least-squares fits to hundreds of points: negligible
    blur = math.sqrt(max(fit["blur"] ** 2 - jitter_var - 1.0 / 6.0, 0.04))
    thr = cm.threshold
    sm = ndimage.gaussian_filter(img, 1.5)
    film = ndimage.binary_erosion(sm > thr if cm.polarity == "dark" else sm <= thr, iterations=max(2, int(0.2 * gap)))
    holes = ndimage.binary_erosion(sm <= thr if cm.polarity == "dark" else sm > thr, iterations=max(2, int(0.3 * R)))
    d_true = 2 * (R + fit["shift"])
    return {"pitch_nm": pitch * px, "diameter_nm": d_true * px,
            "width_frac": float(np.clip(d_true / pitch, 0.05, 0.95)),
            "hole_level": fit["low"], "pattern_level": fit["high"], "background_level": fit["high"],
            "plateau_spread": float(img[film].std()) if film.any() else float("nan"),
            "trench_spread": float(img[holes].std()) if holes.any() else float("nan"),
            "rim_amp": fit["rim_amp"], "halo_amp": fit["halo_amp"], "halo_width_nm": fit["halo_width"] * px,
            "psf_sigma_nm": blur * px, "profile_blur_nm": fit["blur"] * px, "scan_asymmetry": 0.0,
            "contact_radial_sigma_nm": sig_r * px, "n_contacts": float(len(keep)),
            "dark_holes": 1.0 if fit["low"] < fit["high"] else 0.0,
            "charging_amp": _plane_range(img, film),
            "_profile": (t * px, v, edge_model(t, **{k: fit[k] for k in fit if k != "rms"})), "_edges": len(keep)}


# --------------------------------------------------------------------------- the fit


def _bootstrap(vals: np.ndarray, rng: np.random.Generator, n_boot: int = 2000) -> tuple[float, float, float]:
    v = vals[np.isfinite(vals)]
    if len(v) == 0:
        return (float("nan"),) * 3
    if len(v) == 1:
        return 0.0, float(v[0]), float(v[0])
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(means.std()), float(lo), float(hi)


def _measure(fr: Frame, kind: str, px: float, priors_px: dict[str, float], alpha: float):
    """Every estimate of one frame: (estimates, mean edge profile, LER PSD or None, noise)."""
    est = (_lines_frame(fr, px, priors_px, alpha) if KINDS[kind] == "lines"
           else _contacts_frame(fr, px, priors_px))
    nz = noise_fit(fr.image, transposed=est.get("vertical", 1.0) == 0.0)
    mean_sig = float(fr.image.mean())
    for bits in (8, 16, 0):  # the gray levels of the file (the simulator quantises to them too)
        q = 2 ** bits - 1
        if bits == 0 or np.abs(fr.image * q - np.rint(fr.image * q)).max() < 0.02:  # float32 files: 16 bits to ~0.004
            est["bit_depth"] = float(bits)
            break
    est["noise_sigma"] = math.sqrt(nz["white_var"] + nz["corr_var"])
    est["noise_sigma_spectral"] = nz["sigma"]
    est["dose"] = mean_sig / nz["white_var"] if nz["white_var"] > 1e-9 else 1e6
    est["detector_sigma"] = math.sqrt(nz["corr_var"])
    est["noise_corr_px"] = nz["corr_px"]
    est["mean_signal"], est["noise_white_var"], est["noise_corr_var"] = mean_sig, nz["white_var"], nz["corr_var"]
    est["scanline_sigma"] = math.sqrt(nz["scan_var"])
    nvs = noise_vs_signal(fr.image)
    nvs["hist"] = np.histogram(fr.image, bins=64, range=(0.0, 1.0), density=True)[0]
    est["pg_a"], est["pg_b"] = nvs["a"], nvs["b"]
    # the signal-dependent (shot) share of the noise variance, from the level-vs-signal curve
    # (its shape; correlated noise reads low there, the level comes from the spectrum)
    shot = max(nvs["a"], 0.0) * mean_sig
    est["shot_fraction"] = shot / (shot + max(nvs["b"], 0.0)) if shot > 0 else 0.0
    # noise mostly correlated along the scan: all of it (shot too) low-passed (scan_corr_px)
    est["scan_corr_px"] = nz["corr_px_all"] if nz["corr_var"] > nz["white_var"] else 0.0
    prof, psd = est.pop("_profile"), est.pop("_ler_psd", None)
    est.pop("_edges")
    noise = {"spectrum": nz["spectrum"], "scan_profile": nz["scan_profile"], "vs_signal": nvs,
             "white_var": nz["white_var"], "corr_var": nz["corr_var"], "corr_px": nz["corr_px"]}
    return {k: float(v) for k, v in est.items()}, prof, psd, noise


# closed-loop refinement: parameter <- measured key, corrected additively or by a ratio
_ADD = ("pattern_level", "background_level", "hole_level", "rim_amp", "halo_amp", "width_frac")
_MUL = {"psf_sigma_nm": "psf_sigma_nm", "ler_sigma_nm": "ler_sigma_floor_nm", "ler_corr_nm": "ler_corr_nm",
        "lpr_sigma_nm": "lpr_sigma_nm",  # not ler_across_nm: clipped at independence, it is a bound
        "noise_corr_px": "noise_corr_px", "scanline_sigma": "scanline_sigma", "halo_width_nm": "halo_width_nm",
        "wander_nm": "wander_nm", "wander_corr_nm": "wander_corr_nm"}


def _refine_step(params: dict[str, Any], real: dict[str, float], sim: dict[str, float]
                 ) -> tuple[dict[str, Any], dict[str, float], dict[str, float]]:
    """One step of indirect inference: the fit measured on frames simulated with `params`
    (`sim`) against the fit of the real frames (`real`); each parameter moves by the
    difference (levels, amplitudes, fractions) or the ratio (widths, lengths, noise
    variances, each ratio within [0.5, 2]). Returns (params, additive, multiplicative)."""
    p, add, mul = dict(params), {}, {}

    def ok(*v):
        return all(x is not None and math.isfinite(x) for x in v)

    for k in _ADD:
        if k in p and ok(real.get(k), sim.get(k)) and not isinstance(p[k], list):
            add[k] = real[k] - sim[k]
            lo, hi = (0.02, 0.98) if k == "width_frac" else (0.0, 1.0)
            p[k] = float(np.clip(p[k] + add[k], lo, hi))
    for k, m in _MUL.items():
        if k in p and ok(real.get(m), sim.get(m)) and sim[m] > 1e-9 and real[m] > 1e-9 and p[k]:
            mul[k] = float(np.clip(real[m] / sim[m], 0.5, 2.0))
            p[k] = float(p[k] * mul[k])
    rw, sw = real.get("noise_white_var"), sim.get("noise_white_var")
    if p.get("scan_corr_px"):  # scan-correlated noise: its total variance is what counts
        rw, sw = (d.get("noise_white_var", 0) + d.get("noise_corr_var", 0) for d in (real, sim))
        real, sim = {**real, "noise_corr_var": rw}, {**sim, "noise_corr_var": sw}
    if ok(rw, sw) and rw > 1e-12 and sw > 1e-12:
        mul["dose"] = float(np.clip(sw / rw, 0.5, 2.0))
        p["dose"] = float(np.clip(p["dose"] * mul["dose"], 1.0, 1e6))
    rc, sc = real.get("noise_corr_var"), sim.get("noise_corr_var")
    if ok(rc, sc) and rc > 1e-12 and sc > 1e-12 and p.get("detector_sigma"):
        mul["detector_sigma"] = float(np.clip(math.sqrt(rc / sc), 0.5, 2.0))
        p["detector_sigma"] = float(p["detector_sigma"] * mul["detector_sigma"])
    return p, add, mul


def fit_sim(frames_or_dir, kind: str = "line-space", pixel_nm: float | None = None, *,
            split: Sequence[str] | None = None, priors: dict[str, float] | None = None,
            progress: bool = False, seed: int = 0, refine: int = 1) -> FitResult:
    """Simulator parameters from real frames (module doc). `frames_or_dir`: a folder, an
    image file, a list of them, or a list of 2-D arrays (then `pixel_nm` is required);
    `kind`: "line-space" or "contacts"; `split`: keep only frames of these stored splits;
    `priors`: sidewall_nm, rim_width_nm, rim_offset_nm (see PRIORS). `refine`: closed-loop
    steps (`_refine_step`): frames simulated with the fit are measured by the same estimators
    and the parameters corrected by the real-minus-simulated difference, so the estimators'
    own biases cancel (0: the direct estimates)."""
    if kind not in KINDS:
        raise ValueError(f"fit-sim: kind {kind!r} cannot be fitted; fittable kinds: {', '.join(KINDS)}")
    from semlab.data.simulate import get_preset

    base = get_preset(kind)
    pri = dict(PRIORS)
    if priors:
        bad = set(priors) - set(PRIORS)
        if bad:
            raise ValueError(f"fit-sim: unknown prior(s) {sorted(bad)}; valid: {sorted(PRIORS)}")
        pri.update({k: float(v) for k, v in priors.items()})
    frames, px, notes = load_frames(frames_or_dir, pixel_nm=pixel_nm, split=split)
    priors_px = {k: v / px for k, v in pri.items()}
    alpha = float(base.params.get("ler_alpha", 0.5))
    per, profiles, psds, noise = [], [], [], []
    from tqdm.auto import tqdm

    for fr in tqdm(frames, desc=f"fit-sim {kind}", disable=not progress):
        est, prof, psd, nz = _measure(fr, kind, px, priors_px, alpha)
        profiles.append(prof)
        psds.append(psd)
        noise.append(nz)
        per.append({"frame": fr.name, **est})
    if "dark_holes" in per[0] and len({p["dark_holes"] for p in per}) > 1:  # holes and pillars: not one look
        dark = sum(p["dark_holes"] for p in per) >= len(per) / 2
        keep = [i for i, p in enumerate(per) if (p["dark_holes"] == 1.0) == dark]
        notes.append(f"frames show both dark holes and bright pillars: fitted to the {len(keep)} frame(s) with "
                     f"{'dark holes' if dark else 'bright pillars'}; left out "
                     f"{', '.join(per[i]['frame'] for i in range(len(per)) if i not in keep)} (fit them on their own)")
        per, profiles, psds, noise = ([x[i] for i in keep] for x in (per, profiles, psds, noise))
        frames = [frames[i] for i in keep]
    rng = np.random.default_rng(seed)
    keys = [k for k in per[0] if k != "frame"]
    mean = {k: float(np.nanmean([p[k] for p in per])) if any(np.isfinite(p[k]) for p in per) else float("nan")
            for k in keys}
    unc = {k: _bootstrap(np.array([p[k] for p in per]), rng) for k in keys}
    wc = np.array([p["noise_corr_var"] for p in per])
    if wc.sum() > 0:  # the correlation length of the correlated part, weighted by its variance per frame
        mean["noise_corr_px"] = float((wc * np.array([p["noise_corr_px"] for p in per])).sum() / wc.sum())
    params = _to_params(kind, mean, pri, base.params, px)
    add: dict[str, float] = {}
    mul: dict[str, float] = {}
    if refine:
        from semlab.data.presetfile import params_to_spec
        from semlab.data.simulate import Preset

        shape = (min(frames[0].image.shape[0], 640), min(frames[0].image.shape[1], 640))
        for it in range(int(refine)):
            pre = Preset(f"{kind}-fit", "refinement", base.layout, px * 1024, {**base.params, **params_to_spec(params)})
            sm = [_measure(Frame(f"sim-{k}", s.astype(np.float64), px), kind, px, priors_px, alpha)[0]
                  for k, s in enumerate(render_like(pre, shape, 2, pixel_nm=px, seed=seed + 101 + it))]
            sim_mean = {k: float(np.nanmean([m.get(k, np.nan) for m in sm])) for k in sm[0]}
            params, a_, m_ = _refine_step(params, mean, sim_mean)
            for k, v in a_.items():
                add[k] = add.get(k, 0.0) + v
            for k, v in m_.items():
                mul[k] = mul.get(k, 1.0) * v
        notes.append(f"refined in {int(refine)} closed-loop step(s): simulated with the fit, measured by the same "
                     f"estimators, corrected (levels {', '.join(f'{k} {v:+.3g}' for k, v in add.items())}; "
                     f"ratios {', '.join(f'{k} x{v:.3g}' for k, v in mul.items())})")
    looks = []
    if len(per) >= 2:  # frame looks: each frame's frame-level parameters, jointly (semlab.data.looks)
        looks = [_fit_look(kind, frames[i], per[i], params, pri, base, px, priors_px, alpha, refine, seed)
                 for i in range(len(per))]
        notes.append(f"{len(looks)} frame looks ({', '.join(looks[0]['params'])} fitted per frame, "
                     f"{int(refine)} closed-loop step(s) each): each simulated frame uses one")
    for k in RANGE_KEYS:  # frames that differ more than the bootstrap noise: the range of the frames
        vals = np.array([p[k] for p in per if k in p and math.isfinite(p[k])])
        vals = vals * mul.get(k, 1.0) + add.get(k, 0.0)
        if k in params and len(vals) >= 2 and np.ptp(vals) > RANGE_SPREAD * max(abs(vals.mean()), 1e-6):
            params[k] = [float(vals.min()), float(vals.max())]
            notes.append(f"{k}: frames range {vals.min():.4g}-{vals.max():.4g}: written as a range")
    for k in ("ler_corr_nm",):
        if k in mean and not math.isfinite(mean[k]):
            notes.append(f"{k}: the edge PSD has too few bins above its noise floor; the base preset's value kept")
    t0 = profiles[0][0]
    same = all(len(p[0]) == len(t0) for p in profiles)
    prof = {"per_frame": profiles}
    if same:
        prof.update(t_nm=t0, value=np.mean([p[1] for p in profiles], axis=0),
                    model=np.mean([p[2] for p in profiles], axis=0))
    ler = {"per_frame": [p for p in psds if p is not None]}
    sources = [{"name": f.name, "sha256": f.sha256, "pixel_nm": f.pixel_nm} for f in frames]
    return FitResult(kind, px, params, per, unc, sources, prof,
                     {"per_frame": noise, "spectrum": np.mean([n["spectrum"] for n in noise], axis=0)}, ler, notes,
                     looks)


# frame-level parameters fitted per frame into a look (a subset of semlab.data.looks.LOOK_KEYS)
LOOK_FIT = ("pattern_level", "background_level", "hole_level", "rim_amp", "halo_amp", "halo_width_nm",
            "psf_sigma_nm", "scan_asymmetry", "dose", "detector_sigma", "noise_corr_px", "scan_corr_px",
            "scanline_sigma", "bit_depth", "charging_amp", "wander_nm", "wander_corr_nm", "tilt")


def _fit_look(kind: str, fr: Frame, est: dict[str, float], pooled: dict[str, Any], pri: dict[str, float], base,
              px: float, priors_px: dict[str, float], alpha: float, refine: int, seed: int) -> dict[str, Any]:
    """The look of one frame: its frame-level parameters (`LOOK_FIT`) from its own estimates
    `est`, refined in the closed loop against that frame alone with the pooled geometry."""
    own = _to_params(kind, est, pri, base.params, px)
    look = {k: own[k] for k in LOOK_FIT if own.get(k) is not None}
    if refine:
        from semlab.data.presetfile import params_to_spec
        from semlab.data.simulate import Preset

        shape = (min(fr.image.shape[0], 640), min(fr.image.shape[1], 640))
        for it in range(int(refine)):
            p = {**pooled, **look}
            pre = Preset(f"{kind}-look", "refinement", base.layout, px * 1024, {**base.params, **params_to_spec(p)})
            sm = [_measure(Frame(f"sim-{k}", s.astype(np.float64), px), kind, px, priors_px, alpha)[0]
                  for k, s in enumerate(render_like(pre, shape, 2, pixel_nm=px, seed=seed + 211 + it))]
            sim_mean = {k: float(np.nanmean([m.get(k, np.nan) for m in sm])) for k in sm[0]}
            p = _refine_step(p, est, sim_mean)[0]
            look = {k: p[k] for k in look}
    from semlab.data.presetfile import VALID

    look = {k: float(np.clip(v, *VALID[k])) for k, v in look.items()}  # within the preset file's valid ranges
    return {"params": look, "source": {"name": fr.name, "sha256": fr.sha256, "pixel_nm": fr.pixel_nm}}


def _to_params(kind: str, m: dict[str, float], pri: dict[str, float], base: dict[str, Any], px: float
               ) -> dict[str, Any]:
    """The simulator parameters of a fit: estimated keys from the frame means `m`, held ones
    from the priors, the rest fixed to 'off' where the fit models regular structures only."""
    def fin(k, default=None):
        v = m.get(k, float("nan"))
        return float(v) if math.isfinite(v) else default

    p: dict[str, Any] = {
        "pitch_nm": fin("pitch_nm"), "width_frac": fin("width_frac"),
        "pattern_level": float(np.clip(fin("pattern_level"), 0, 1)),
        "background_level": float(np.clip(fin("background_level"), 0, 1)),
        "rim_amp": max(fin("rim_amp", 0.0), 0.0), "rim_width_nm": pri["rim_width_nm"],
        "rim_offset_nm": pri["rim_offset_nm"], "sidewall_nm": pri["sidewall_nm"],
        "halo_amp": max(fin("halo_amp", 0.0), 0.0), "halo_width_nm": fin("halo_width_nm", 5.0),
        "psf_sigma_nm": fin("psf_sigma_nm"), "scan_asymmetry": float(np.clip(fin("scan_asymmetry", 0.0), -1, 1)),
        # noise: from the frame-mean variances (a mean of doses would weight low-noise frames)
        "dose": float(np.clip(m["mean_signal"] / m["noise_white_var"] if m["noise_white_var"] > 1e-9 else 1e6,
                              1.0, 1e6)),
        "detector_sigma": math.sqrt(max(m["noise_corr_var"], 0.0)),
        "noise_corr_px": fin("noise_corr_px", 0.0), "scanline_sigma": fin("scanline_sigma", 0.0),
        "scan_corr_px": 0.0, "bit_depth": fin("bit_depth", 0.0) if fin("bit_depth", 0.0) in (8.0, 16.0) else 0.0,
        "charging_amp": float(np.clip(fin("charging_amp", 0.0), 0, 0.5)),
        "brightness": 0.0, "contrast": 1.0, "texture_amp": 0.0, "drift_px": 0.0, "defect_prob": 0.0,
    }
    if fin("scan_corr_px", 0.0) > 0:  # a frame's noise is correlated along the scan (module doc)
        var, q = m["noise_white_var"] + m["noise_corr_var"], float(np.clip(fin("shot_fraction", 1.0), 0, 1))
        p.update(dose=float(np.clip(m["mean_signal"] / max(q * var, 1e-12), 1.0, 1e6)), noise_corr_px=0.0,
                 detector_sigma=math.sqrt(max((1 - q) * var, 0.0)), scan_corr_px=fin("scan_corr_px"))
    if kind == "line-space":
        # corner rounding blurs the coverage before the signed distance: a blur near the CD
        # distorts dense lines (edge roughness reads up to 1.6x at 8 nm on 13-nm lines), and
        # straight lines have no corners: a fifth of the CD
        if fin("cd_nm") is not None:
            p["corner_radius_nm"] = 0.2 * fin("cd_nm")
        p.update(ler_sigma_nm=fin("ler_sigma_nm", base.get("ler_sigma_nm")),
                 line_end_prob=0.0, vertical=float(np.clip(fin("vertical", 1.0), 0, 1)))
        c = fin("ler_corr_nm")
        if c is not None:
            p["ler_corr_nm"] = c
        c = fin("ler_across_nm")
        if c is not None:
            p["ler_across_nm"] = c
        if fin("wander_nm", 0.0) > 0:  # scan wander: rows shifted as a whole (semlab.data.placement)
            p.update(wander_nm=fin("wander_nm"), wander_corr_nm=fin("wander_corr_nm", 100.0))
        if abs(fin("tilt", 0.0)) >= 0.002:  # tilted lines (> 2 px over 1000 rows): one rectangle per row
            p["tilt"] = fin("tilt")
        if fin("lpr_sigma_nm", 0.0) > 0.05 * (fin("ler_sigma_nm") or 1.0):  # placement roughness (semlab.data.placement)
            p.update(lpr_sigma_nm=fin("lpr_sigma_nm"), lpr_corr_nm=fin("lpr_corr_nm", p.get("ler_corr_nm", 20.0)))
    else:
        p.update(hole_level=float(np.clip(fin("hole_level"), 0, 1)), missing_prob=0.0, stagger=0.0)
    return p


def render_like(preset, shape: tuple[int, int], n: int, *, pixel_nm: float, seed: int = 0) -> list[np.ndarray]:
    """`n` frames of `shape` simulated with `preset` (a name or a `Preset`, e.g. from
    `presetfile.load_preset_file`) at `pixel_nm`: the simulated side of a fit comparison."""
    from semlab.data.simulate import simulate

    return [simulate(preset, tuple(shape), (seed, 23, k), pixel_nm=pixel_nm, with_contours=False).image
            for k in range(int(n))]
