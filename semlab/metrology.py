"""SEM metrology from pixels: pitch, CD, unbiased LER/LWR, contact diameter and roundness.

Shared by the simulator fit (`semlab.data.fit`), segmentation checks on real frames and
downstream scoring. Every function takes one gray image (H, W) (any numeric type, as
`semlab.arrays.as_gray_stack` reads it) and returns numbers in **pixels**; multiply by the
pixel size for nm.

* `fft_pitch`: the period of the strongest periodic component, from the peak of the
  zero-padded, Hann-windowed 2-D power spectrum with sub-bin (Gaussian, i.e. parabolic
  on log power) peak interpolation; a peak whose half frequency also holds a clear peak
  is a harmonic (lines with a bright rim on both edges repeat every half pitch) and the
  fundamental is taken instead.
* `line_edges` / `measure_lines`: edge positions of every line in every row (lines
  running along the image's columns; horizontal lines are transposed first), from
  sub-pixel threshold crossings of the row profiles after a Gaussian smoothing *across*
  the lines only (smoothing along a line would remove roughness). CD is the mean
  right-minus-left edge distance.
* **Unbiased LER / LWR** (`edge_psd`, `unbiased_sigma`): image noise moves each detected
  edge by a random amount that is white along the line, so it adds a flat floor to the
  edge-position power spectral density (PSD). The floor is the mean PSD over the
  highest frequencies (`floor_band`, cycles/px, where real roughness with a correlation
  length of a few px has decayed) and is subtracted from the whole PSD; the unbiased
  variance is the sum of what remains (Parseval). LER = 3 sigma of the detrended edge
  positions, LWR = 3 sigma of the widths (the convention of SEMI / Mack).
* `measure_contacts`: holes (or pillars) found by an Otsu threshold of the smoothed
  image, their sub-pixel contour (marching squares at that level), the equivalent
  diameter ``2 sqrt(A / pi)`` of the contour's area and roundness = minor / major axis
  of the contour's second moments (1 for a circle), plus the radial deviation sigma
  about the least-squares circle.
* `edge_overshoot`: bright-rim overshoot and dark-halo depth across the edges of a given
  plateau mask, as fractions of the plateau-to-trench step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from semlab.arrays import as_gray_stack

__all__ = [
    "PitchResult",
    "fft_pitch",
    "LineEdges",
    "line_edges",
    "edge_psd",
    "unbiased_sigma",
    "LineMetrics",
    "measure_lines",
    "Contact",
    "ContactMetrics",
    "measure_contacts",
    "edge_overshoot",
]


def _image(img, what: str = "image", min_size: int = 8) -> np.ndarray:
    return as_gray_stack(img, what=what, dtype=np.float64, value_range=None, min_size=min_size)[0]


# --------------------------------------------------------------------------- pitch


@dataclass(frozen=True)
class PitchResult:
    """`pitch_px`: the period; `fy`, `fx`: the fundamental's frequency (cycles/px, signed);
    `angle_deg`: direction of the wave vector (0 = intensity varies along x, i.e. vertical
    lines); `harmonic`: the strongest peak was the k-th harmonic (1 = fundamental);
    `peak_snr`: peak power over the median power at that radius."""

    pitch_px: float
    fy: float
    fx: float
    angle_deg: float
    harmonic: int
    peak_snr: float


def _interp_peak(logp: np.ndarray, i: int, j: int) -> tuple[float, float]:
    """Sub-bin offsets (di, dj) of a peak at (i, j) of a (wrapped) log-power array: a
    parabola through the three samples on each axis (exact for a Gaussian peak)."""
    h, w = logp.shape

    def off(a, b, c):
        den = a - 2 * b + c
        return 0.0 if den >= 0 else float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))

    di = off(logp[(i - 1) % h, j], logp[i, j], logp[(i + 1) % h, j])
    dj = off(logp[i, (j - 1) % w], logp[i, j], logp[i, (j + 1) % w])
    return di, dj


def fft_pitch(img, *, min_period: float = 3.0, pad: int = 2, harmonic_ratio: float = 0.05,
              max_harmonic: int = 3) -> PitchResult:
    """Pitch (px) of the strongest periodic structure of an image (see the module doc).

    The image is mean-subtracted, Hann-windowed and zero-padded `pad`-fold; the peak is
    searched among frequencies with a period of at least `min_period` px and at least
    two periods across the image. A peak at frequency f counts as the k-th harmonic
    (k <= `max_harmonic`) if the power near f/k exceeds `harmonic_ratio` times the peak
    and 10 times the median power at that radius. ValueError for an image with no
    periodic structure (a flat image).
    """
    x = _image(img)
    h, w = x.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    if float(x.std()) <= 1e-9 * (abs(float(x.mean())) + 1.0):
        raise ValueError("fft_pitch: the image is flat, it has no periodic structure")
    xm = (x - x.mean()) * win
    H, W = pad * h, pad * w
    p = np.abs(np.fft.fft2(xm, s=(H, W))) ** 2
    fy = np.fft.fftfreq(H)[:, None]
    fx = np.fft.fftfreq(W)[None, :]
    fr = np.sqrt(fy ** 2 + fx ** 2)
    lo = max(2.0 / min(h, w), 1e-9)  # at least two periods across the image
    ok = (fr >= lo) & (fr <= 1.0 / min_period)
    ok &= (fx > 0) | ((fx == 0) & (fy > 0))  # one half-plane (the spectrum is symmetric)
    if not ok.any():
        raise ValueError(f"fft_pitch: a {h}x{w} image has no frequencies with periods >= {min_period} px")
    q = np.where(ok, p, -1.0)
    i, j = np.unravel_index(int(np.argmax(q)), q.shape)
    logp = np.log(np.maximum(p, 1e-300))
    rbin = np.rint(fr * min(H, W)).astype(np.int64)
    med = ndimage.median(p, labels=rbin, index=np.unique(rbin[ok]))
    med_of = dict(zip(np.unique(rbin[ok]).tolist(), np.atleast_1d(med).tolist()))

    def refined(ii: int, jj: int) -> tuple[float, float]:
        di, dj = _interp_peak(logp, ii, jj)
        return float(np.fft.fftfreq(H)[ii] + di / H), float(np.fft.fftfreq(W)[jj] + dj / W)

    f_y, f_x = refined(i, j)
    peak = float(p[i, j])
    harmonic = 1
    for k in range(max_harmonic, 1, -1):  # the lowest sub-harmonic with a clear peak wins
        ty, tx = f_y / k, f_x / k
        if np.hypot(ty, tx) < lo:
            continue
        ci, cj = int(round(ty * H)) % H, int(round(tx * W)) % W
        ys = [(ci + d) % H for d in (-1, 0, 1)]
        xs = [(cj + d) % W for d in (-1, 0, 1)]
        sub = p[np.ix_(ys, xs)]
        a, b = np.unravel_index(int(np.argmax(sub)), sub.shape)
        val = float(sub[a, b])
        bg = med_of.get(int(np.rint(np.hypot(ty, tx) * min(H, W))), float(np.median(p[ok])))
        if val >= harmonic_ratio * peak and val >= 10.0 * bg:
            f_y, f_x = refined(ys[a], xs[b])
            harmonic = k
            break
    f = float(np.hypot(f_y, f_x))
    snr = peak / max(med_of.get(int(rbin[i, j]), 1e-300), 1e-300)
    return PitchResult(1.0 / f, f_y, f_x, float(np.degrees(np.arctan2(f_y, f_x))), harmonic, float(snr))


# --------------------------------------------------------------------------- lines


@dataclass
class LineEdges:
    """Edge positions of the lines of an image. `left`, `right`: (n_lines, n_rows) in px
    along the profile (NaN where an edge was not found); rows run along the lines.
    `transposed`: the image was transposed (horizontal lines). `threshold`: the level
    of the crossings; `polarity`: "bright" lines on a dark ground or "dark"."""

    left: np.ndarray
    right: np.ndarray
    transposed: bool
    threshold: float
    polarity: str

    @property
    def n_lines(self) -> int:
        return int(self.left.shape[0])


def _mid_level(s: np.ndarray) -> float:
    """Half-way between the two phases (the 50% level of a symmetric edge; Otsu's own
    threshold leans towards the larger class): the mean of the medians of the two Otsu
    classes of the flat pixels (gradient magnitude at most its median), so that the
    pixels of the edge transitions do not pull the levels towards each other."""
    from skimage.filters import threshold_otsu

    gy, gx = np.gradient(s)
    g = np.hypot(gy, gx)
    flat = s[g <= np.median(g)]
    if flat.size < 2 or flat.min() == flat.max():
        flat = s.ravel()
    t = float(threshold_otsu(flat))
    lo, hi = flat[flat <= t], flat[flat > t]
    if not lo.size or not hi.size:
        return t
    return float(0.5 * (np.median(lo) + np.median(hi)))


def _crossings(row: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel up- and down-crossings of `thr` along a 1-D profile (linear interpolation)."""
    above = row > thr
    d = np.diff(above.astype(np.int8))
    idx_up, idx_dn = np.flatnonzero(d == 1), np.flatnonzero(d == -1)

    def pos(idx):
        a, b = row[idx], row[idx + 1]
        return idx + (thr - a) / np.where(b != a, b - a, 1.0)

    return pos(idx_up), pos(idx_dn)


def _orientation(x: np.ndarray) -> bool:
    """True if the lines are horizontal (intensity varies along y more than along x)."""
    gy = np.abs(np.diff(x.mean(axis=1))).sum()
    gx = np.abs(np.diff(x.mean(axis=0))).sum()
    return bool(gy > gx)


def line_edges(img, *, orientation: str = "auto", polarity: str = "auto", smooth_px: float = 1.0,
               threshold: float | None = None, margin_px: float = 1.0) -> LineEdges:
    """Left and right edges of every line in every row (see the module doc).

    `orientation`: "vertical" (lines along columns), "horizontal" or "auto" (from the
    column- and row-mean profiles). `polarity`: "bright" lines, "dark" lines or "auto"
    (the phase covering less than half the area is the line... unless both are close,
    then bright). `threshold`: crossing level (default: Otsu of the smoothed image).
    Lines are found on the row-mean profile; lines within `margin_px` of the image
    border on either side are left out (they may continue outside). Each row's
    crossings are matched to the nearest nominal edge within a quarter of the line's
    local period; unmatched edges are NaN.
    """
    x = _image(img)
    if orientation not in ("auto", "vertical", "horizontal"):
        raise ValueError(f"orientation must be 'auto', 'vertical' or 'horizontal', got {orientation!r}")
    if polarity not in ("auto", "bright", "dark"):
        raise ValueError(f"polarity must be 'auto', 'bright' or 'dark', got {polarity!r}")
    transposed = _orientation(x) if orientation == "auto" else orientation == "horizontal"
    if transposed:
        x = x.T
    s = ndimage.gaussian_filter1d(x, smooth_px, axis=1, mode="nearest") if smooth_px > 0 else x
    thr = _mid_level(s) if threshold is None else float(threshold)
    if polarity == "auto":
        polarity = "bright" if (s > thr).mean() <= 0.55 else "dark"
    if polarity == "dark":
        s, thr = -s, -thr
    prof = s.mean(axis=0)
    up, dn = _crossings(prof, thr)
    lines = []
    for u in up:
        after = dn[dn > u]
        if after.size:
            lines.append((float(u), float(after[0])))
    n = x.shape[1]
    lines = [(a, b) for a, b in lines if a > margin_px and b < n - 1 - margin_px]
    if not lines:
        raise ValueError("line_edges: no complete line found (is the image a line/space pattern?)")
    nominal = np.array(lines)
    centres = nominal.mean(axis=1)
    gap = np.diff(centres).min() if len(centres) > 1 else n
    tol = max(1.0, 0.25 * gap)
    rows = s.shape[0]
    left = np.full((len(nominal), rows), np.nan)
    right = np.full((len(nominal), rows), np.nan)
    for r in range(rows):
        u, d = _crossings(s[r], thr)
        for k, (a, b) in enumerate(nominal):
            if u.size:
                i = int(np.argmin(np.abs(u - a)))
                if abs(u[i] - a) <= tol:
                    left[k, r] = u[i]
            if d.size:
                i = int(np.argmin(np.abs(d - b)))
                if abs(d[i] - b) <= tol:
                    right[k, r] = d[i]
    return LineEdges(left, right, transposed, thr if polarity == "bright" else -thr, polarity)


def _fill(e: np.ndarray, max_missing: float) -> np.ndarray | None:
    """An edge trace with its NaNs linearly interpolated, or None if too many are missing."""
    bad = ~np.isfinite(e)
    if bad.mean() > max_missing or (~bad).sum() < 8:
        return None
    if bad.any():
        i = np.arange(len(e))
        e = e.copy()
        e[bad] = np.interp(i[bad], i[~bad], e[~bad])
    return e


def edge_psd(traces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(freq, psd)``: the mean one-sided-frequency PSD of detrended traces ((n, L), no NaN),
    normalised so that ``psd.sum() / L`` over all L FFT bins equals the mean variance:
    returned for f = k/L, k = 0..L//2, as the two-sided value |FFT|^2 / L."""
    t = np.atleast_2d(np.asarray(traces, dtype=np.float64))
    n, L = t.shape
    i = np.arange(L)
    A = np.stack([np.ones(L), i - i.mean()], axis=1)
    coef, *_ = np.linalg.lstsq(A, t.T, rcond=None)  # remove offset and tilt per trace
    r = t - (A @ coef).T
    p = (np.abs(np.fft.rfft(r, axis=1)) ** 2 / L).mean(axis=0)
    return np.fft.rfftfreq(L), p


def unbiased_sigma(traces: np.ndarray, *, floor_band: tuple[float, float] = (0.3, 0.5)
                   ) -> tuple[float, float, float]:
    """``(sigma_unbiased, sigma_biased, floor)`` of detrended traces: the noise floor is
    the mean PSD over `floor_band` (cycles/px), subtracted from every frequency; the
    variance is the floor-subtracted PSD summed over all L bins / L (Parseval)."""
    f, p = edge_psd(traces)
    L = np.atleast_2d(traces).shape[1]
    band = (f >= floor_band[0]) & (f <= floor_band[1])
    if band.sum() < 2:
        raise ValueError(f"unbiased_sigma: traces of {L} px have too few frequencies in {floor_band}")
    floor = float(p[band].mean())
    w = np.full(len(f), 2.0)  # rfft bins stand for +f and -f, except DC and Nyquist
    w[0] = 1.0
    if L % 2 == 0:
        w[-1] = 1.0
    var_b = float((w * p).sum() / L)
    var_u = var_b - floor * w.sum() / L
    return float(np.sqrt(max(var_u, 0.0))), float(np.sqrt(var_b)), floor


@dataclass
class LineMetrics:
    """Line metrics in px: `pitch` (FFT), `cd` (mean width), `cd_per_line`,
    `ler_3sigma` / `lwr_3sigma` (unbiased, noise floor removed) and their `*_biased`
    values, `ler_floor` (edge PSD floor, px^2), `n_lines`, `n_edges`, `n_rows`."""

    pitch: float
    cd: float
    cd_per_line: list[float]
    ler_3sigma: float
    ler_3sigma_biased: float
    lwr_3sigma: float
    lwr_3sigma_biased: float
    ler_floor: float
    n_lines: int
    n_edges: int
    n_rows: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def measure_lines(img, *, orientation: str = "auto", polarity: str = "auto", smooth_px: float = 1.0,
                  threshold: float | None = None, floor_band: tuple[float, float] = (0.3, 0.5),
                  max_missing: float = 0.05) -> LineMetrics:
    """Pitch, CD, unbiased LER and LWR of a line/space image (px; see the module doc).
    Edges missing in more than `max_missing` of the rows are left out of LER/LWR."""
    x = _image(img)
    pitch = fft_pitch(x).pitch_px
    e = line_edges(x, orientation=orientation, polarity=polarity, smooth_px=smooth_px, threshold=threshold)
    notes = []
    edges, widths, cds = [], [], []
    for k in range(e.n_lines):
        a, b = _fill(e.left[k], max_missing), _fill(e.right[k], max_missing)
        for t in (a, b):
            if t is not None:
                edges.append(t)
        if a is not None and b is not None:
            widths.append(b - a)
        wk = e.right[k] - e.left[k]
        if np.isfinite(wk).any():
            cds.append(float(np.nanmean(wk)))
    if not edges:
        raise ValueError("measure_lines: no edge was found in enough rows to measure roughness")
    ler_u, ler_b, floor = unbiased_sigma(np.stack(edges), floor_band=floor_band)
    if widths:
        lwr_u, lwr_b, _ = unbiased_sigma(np.stack(widths), floor_band=floor_band)
    else:
        lwr_u = lwr_b = float("nan")
        notes.append("no line had both edges in enough rows: LWR not measured")
    return LineMetrics(pitch=float(pitch), cd=float(np.mean(cds)), cd_per_line=cds, ler_3sigma=3 * ler_u,
                       ler_3sigma_biased=3 * ler_b, lwr_3sigma=3 * lwr_u, lwr_3sigma_biased=3 * lwr_b,
                       ler_floor=floor, n_lines=e.n_lines, n_edges=len(edges), n_rows=int(e.left.shape[1]),
                       notes=notes)


# --------------------------------------------------------------------------- contacts


@dataclass(frozen=True)
class Contact:
    """One contact (px): centre (row, col), equivalent diameter, roundness (minor/major
    axis, 1 = circle), radial deviation sigma about the fitted circle, fitted radius."""

    row: float
    col: float
    diameter: float
    roundness: float
    radial_sigma: float
    fit_radius: float


@dataclass
class ContactMetrics:
    contacts: list[Contact]
    threshold: float
    polarity: str

    @property
    def diameters(self) -> np.ndarray:
        return np.array([c.diameter for c in self.contacts])

    @property
    def diameter(self) -> float:
        return float(np.mean(self.diameters)) if self.contacts else float("nan")

    @property
    def roundness(self) -> float:
        return float(np.mean([c.roundness for c in self.contacts])) if self.contacts else float("nan")

    def to_dict(self) -> dict:
        return {"n": len(self.contacts), "diameter": self.diameter,
                "diameter_sigma": float(np.std(self.diameters)) if self.contacts else float("nan"),
                "roundness": self.roundness, "threshold": self.threshold, "polarity": self.polarity}


def _polygon_moments(c: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """(area, centroid row, centroid col, 2x2 central second-moment matrix / area) of a
    closed polygon (rows, cols), by Green's theorem."""
    y, x = c[:, 0], c[:, 1]
    y1, x1 = np.roll(y, -1), np.roll(x, -1)
    cr = x * y1 - x1 * y
    a = cr.sum() / 2
    if abs(a) < 1e-12:
        return 0.0, float(y.mean()), float(x.mean()), np.zeros((2, 2))
    cx = ((x + x1) * cr).sum() / (6 * a)
    cy = ((y + y1) * cr).sum() / (6 * a)
    ixx = ((x * x + x * x1 + x1 * x1) * cr).sum() / (12 * a) - cx * cx
    iyy = ((y * y + y * y1 + y1 * y1) * cr).sum() / (12 * a) - cy * cy
    ixy = ((x * y1 + 2 * x * y + 2 * x1 * y1 + x1 * y) * cr).sum() / (24 * a) - cx * cy
    return float(abs(a)), float(cy), float(cx), np.array([[iyy, ixy], [ixy, ixx]])


def measure_contacts(img, *, polarity: str = "auto", smooth_px: float = 1.0, threshold: float | None = None,
                     min_area_px: float = 12.0, contour_smooth_px: float = 0.0) -> ContactMetrics:
    """Contacts of an image (see the module doc). `polarity`: "dark" holes, "bright"
    pillars, or "auto" (the phase covering less area). The contacts are found on the image
    smoothed by `smooth_px`; their contours are traced on the image smoothed by
    `contour_smooth_px` (none by default: a blur moves the contour of a curved edge
    inwards by about sigma^2 / 2R). The level is half-way between the two phases (`threshold`
    overrides it). Contacts touching the border or smaller than `min_area_px` are left out."""
    from skimage import measure

    x = _image(img)
    if polarity not in ("auto", "bright", "dark"):
        raise ValueError(f"polarity must be 'auto', 'bright' or 'dark', got {polarity!r}")
    s = ndimage.gaussian_filter(x, smooth_px, mode="nearest") if smooth_px > 0 else x
    thr = _mid_level(s) if threshold is None else float(threshold)
    sc = ndimage.gaussian_filter(x, contour_smooth_px, mode="nearest") if contour_smooth_px > 0 else x
    if polarity == "auto":
        polarity = "bright" if (s > thr).mean() < 0.5 else "dark"
    fg = s > thr if polarity == "bright" else s < thr
    lab = measure.label(fg, connectivity=2)
    h, w = x.shape
    out = []
    for reg in measure.regionprops(lab):
        r0, c0, r1, c1 = reg.bbox
        if r0 == 0 or c0 == 0 or r1 == h or c1 == w or reg.area < min_area_px:
            continue
        pad = 2
        sub = sc[r0 - pad if r0 >= pad else 0:r1 + pad, c0 - pad if c0 >= pad else 0:c1 + pad]
        oy, ox = (r0 - pad if r0 >= pad else 0), (c0 - pad if c0 >= pad else 0)
        msk = lab[oy:oy + sub.shape[0], ox:ox + sub.shape[1]] == reg.label
        # marching squares on this contact only: other contacts' pixels pushed to the far side
        far = sc.min() - 1.0 if polarity == "bright" else sc.max() + 1.0
        field_ = np.where(ndimage.binary_dilation(msk, iterations=2), sub, far)
        cs = measure.find_contours(np.pad(field_, 1, constant_values=far), thr)
        if not cs:
            continue
        c = max(cs, key=len) - 1 + np.array([oy, ox])
        area, cy, cx, m = _polygon_moments(c)
        if area <= 0:
            continue
        ev = np.sort(np.linalg.eigvalsh(m))
        round_ = float(np.sqrt(max(ev[0], 0) / ev[1])) if ev[1] > 0 else float("nan")
        # least-squares circle (Kasa): x^2 + y^2 + D x + E y + F = 0
        A = np.stack([c[:, 1], c[:, 0], np.ones(len(c))], axis=1)
        b = -(c[:, 1] ** 2 + c[:, 0] ** 2)
        (D, E, F), *_ = np.linalg.lstsq(A, b, rcond=None)
        xc, yc = -D / 2, -E / 2
        rad = float(np.sqrt(max(xc * xc + yc * yc - F, 0.0)))
        dev = np.hypot(c[:, 1] - xc, c[:, 0] - yc) - rad
        out.append(Contact(cy, cx, float(2 * np.sqrt(area / np.pi)), round_, float(dev.std()), rad))
    return ContactMetrics(out, thr, polarity)


# --------------------------------------------------------------------------- edge rim and halo


def edge_overshoot(img, mask, *, far_px: float = 6.0, max_px: float = 10.0,
                   bin_px: float = 0.5) -> tuple[float, float]:
    """(rim, halo): the bright-rim overshoot and the dark-halo depth at the edges of
    `mask`, each as a fraction of the plateau-to-trench step (rim > 0 above the plateau,
    halo < 0 below the trench floor).

    `mask` (the image's shape): True, or > 0, on the plateaus (the pattern, e.g. metal),
    False / 0 in the trenches; a segmentation of the image or the simulator's label mask.
    Every pixel's signed distance to the mask edge comes from two Euclidean distance
    transforms (+ on plateaus, - in trenches, the edge half-way between pixel centres at
    0); the pixels within `max_px` of an edge, binned by that distance in `bin_px` bins,
    give the mean intensity profile across all edges of the image.

    * plateau level P: median of the plateau pixels at least `far_px` from an edge;
    * trench level T: median of the trench pixels at least `far_px` from an edge (when
      there are at least 64 of them; otherwise, with only narrow trenches, those at least
      the 75th percentile of the trench pixels' distances away: their centre lines);
    * rim = (max of the profile on the plateau side - P) / (P - T);
    * halo = (min of the profile on the trench side - T) / (P - T).

    For dark plateaus on a bright ground (P < T) the roles of max and min swap, so a rim
    is still an overshoot away from the plateau level's far side. ValueError (one line)
    for shapes that differ, a mask without both phases, or plateaus narrower than
    `far_px`.
    """
    x = _image(img, "edge_overshoot image")
    m = np.asarray(mask)
    if m.shape != x.shape:
        raise ValueError(f"edge_overshoot: mask shape {m.shape} differs from image shape {x.shape}")
    m = m > 0 if m.dtype != bool else m
    if m.all() or not m.any():
        raise ValueError("edge_overshoot: the mask has no edges (it is all plateau or all trench)")
    if far_px <= 0 or max_px <= 0 or bin_px <= 0:
        raise ValueError(f"edge_overshoot: far_px, max_px and bin_px must be > 0, got {far_px}, {max_px}, {bin_px}")
    d = np.where(m, ndimage.distance_transform_edt(m), -ndimage.distance_transform_edt(~m))
    d = d - 0.5 * np.sign(d)  # pixel centres: the edge lies half a pixel outside the last one
    plat = x[d >= far_px]
    if plat.size < 16:
        raise ValueError(f"edge_overshoot: fewer than 16 plateau pixels at least {far_px} px from an edge")
    tdist = -d[~m]
    t_far = far_px if int((tdist >= far_px).sum()) >= 64 else float(np.quantile(tdist, 0.75))
    P, T = float(np.median(plat)), float(np.median(x[~m][tdist >= t_far]))
    step = P - T
    if abs(step) < 1e-9:
        raise ValueError("edge_overshoot: plateau and trench levels are equal, there is no step")
    near = np.abs(d) <= max_px
    idx = np.floor(d[near] / bin_px).astype(np.int64)
    vals = x[near]
    lo = int(idx.min())
    sums = np.bincount(idx - lo, weights=vals)
    cnt = np.bincount(idx - lo)
    centres = (np.arange(len(cnt)) + lo + 0.5) * bin_px
    ok = cnt >= 8
    prof, centres = sums[ok] / cnt[ok], centres[ok]
    inside, outside = prof[centres > 0], prof[centres < 0]
    if not inside.size or not outside.size:
        raise ValueError("edge_overshoot: too few pixels beside the edges for a profile")
    s = 1.0 if step > 0 else -1.0
    rim = s * (float((s * inside).max()) * s - P) / abs(step)
    halo = s * (float((s * outside).min()) * s - T) / abs(step)
    return rim, halo
