"""Metric tables across models (notebook 30): which generators to score, their images,
one `evaluate` per model, and the sample-size study.

Models: the trained translators of the run (Pix2Pix from notebook 20, CycleGAN from
notebook 21, found through the run manifest or the standalone run folders), the
simulator's own image formation applied to the test masks (`render_mask`: a physics
baseline that knows how SEM images form but not each image's exact imaging
parameters), and on simulated data the noise-free image (the upper bound: what a
perfect generator could predict; only the shot and detector noise are left).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

def _tables_settings(name: str) -> dict:
    """Notebook 30's settings of a profile, from `semlab.config` (the one place they live)."""
    import dataclasses

    from semlab.config import load_profile

    t = dataclasses.asdict(load_profile(name).tables)
    return {**t, "curve_ns": list(t["curve_ns"])}


PROFILES = {name: _tables_settings(name) for name in ("smoke", "cpu", "full")}

UPPER_BOUND = "noise-free image (upper bound)"
PHYSICS = "simulator (physics baseline)"


def profile_settings(profile: str) -> dict:
    try:
        return dict(PROFILES[profile])
    except KeyError:
        raise KeyError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}") from None


def find_generators(run_dir, profile: str, domain: str = "sim") -> dict[str, dict]:
    """{"Pix2Pix": {"path": ..., "found": bool, "where": str}, "CycleGAN": {...}} of
    `domain`, from `semlab.runs.find_generator` (the run manifest, else the standalone
    folders)."""
    from semlab.runs import find_generator

    found = {}
    for name, kind in (("Pix2Pix", "pix2pix"), ("CycleGAN", "cyclegan")):
        g = find_generator(kind, domain, run_dir, profile)
        found[name] = {"path": str(g) if g else None, "found": bool(g),
                       "where": "found" if g else f"not found ({g})"}
    return found


def model_images(dataset, ids, generators: dict[str, dict], *, preset: str = "ic-metal", seed: int = 0,
                 with_upper_bound: bool = True, pixel_nm: float | None = None) -> dict[str, np.ndarray]:
    """Generated test images per model, (N, H, W) float32, in the order of `ids`. The
    physics baseline renders each mask with the image's own preset and pixel size when the
    dataset records them (simulated data), else with `preset` at `pixel_nm` (real data:
    the built-in preset of the set's kind at the set's pixel size, `physics_setting`)."""
    from semlab.data.simulate import render_mask
    from semlab.train.generate import Generator

    masks = np.stack([dataset.mask(i) for i in ids])
    out: dict[str, np.ndarray] = {}
    for name, g in generators.items():
        if g.get("found"):
            out[name] = Generator(g["path"])(masks, seed=seed)
    phys = []
    for k, (i, m) in enumerate(zip(ids, masks)):
        prm = dataset.params(i)  # simulated data: render at the image's own pixel size and preset
        phys.append(render_mask(m, prm.get("preset", preset), (seed, 7, k),
                                pixel_nm=prm.get("pixel_nm") or pixel_nm).image)
    out[PHYSICS] = np.stack(phys)
    if with_upper_bound and dataset.clean(ids[0]) is not None:
        out[UPPER_BOUND] = np.stack([dataset.clean(i) for i in ids])
    return out


# ------------------------------------------------------------------ generated images, reused by notebook 40

GENERATED_FORMAT = "semlab-generated-images-1"


def mask_key(mask: np.ndarray) -> str:
    """sha256 of a label mask (shape and ids): which mask an image was generated from."""
    import hashlib

    m = np.ascontiguousarray(mask, dtype=np.uint8)
    return hashlib.sha256(f"{m.shape}".encode() + m.tobytes()).hexdigest()


def save_model_images(fakes: dict[str, np.ndarray], masks: np.ndarray, generators: dict[str, dict], folder, *,
                      seed: int = 0) -> Path | None:
    """`folder/generated.npz`: the trained generators' images of `fakes` with, per image, the
    sha256 of its mask, and per model the generator file's sha256 and the seed, so that a
    later notebook (40) reuses an image only if it would generate exactly that image.
    None when no trained generator made images. Written atomically, no pickles."""
    import io as _io
    import json

    from semlab.io import sha256_file, write_bytes_atomic

    models = [name for name, g in generators.items() if g.get("found") and name in fakes]
    if not models:
        return None
    meta = {"format": GENERATED_FORMAT, "seed": int(seed), "models": {
        name: {"array": f"model{k}", "generator": str(generators[name]["path"]),
               "generator_sha256": sha256_file(generators[name]["path"])} for k, name in enumerate(models)}}
    arrays = {meta["models"][name]["array"]: np.asarray(fakes[name], np.float32) for name in models}
    buf = _io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), masks=np.array([mask_key(m) for m in masks]), **arrays)
    return write_bytes_atomic(Path(folder) / "generated.npz", buf.getvalue())


def reusable_images(path, generators: dict[str, str | Path | None], seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """{model: {mask sha256: image}} from a `save_model_images` file, for the models whose
    generator file (same sha256) and seed match `generators` ({name: generator path}) and
    `seed`; empty when there is no such file. A file that is not one raises ValueError
    naming it."""
    import json

    from semlab.io import sha256_file

    if not path or not Path(path).is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            keys = [str(k) for k in z["masks"]]
            stored = {name: z[m["array"]] for name, m in meta.get("models", {}).items()}
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: not a file of generated images ({exc})") from None
    if meta.get("format") != GENERATED_FORMAT or meta.get("seed") != int(seed):
        return {}
    out = {}
    for name, images in stored.items():
        g = generators.get(name)
        if g and Path(g).is_file() and sha256_file(g) == meta["models"][name]["generator_sha256"]:
            out[name] = dict(zip(keys, images))
    return out


def physics_setting(dataset, real, preset: str) -> tuple[str, float | None]:
    """(preset, pixel size in nm) of the physics baseline: on simulated data (`real` None)
    `preset` and the images' own sizes; on a real set (`real`: its `RealSplit`) the
    simulator's built-in preset of the set's kind at the set's pixel size."""
    from semlab.train.realsets import set_pixel_nm, set_preset

    if real is None:
        return preset, None
    masks = np.stack([dataset.mask(i) for i in real.tiles.get("train", [])[:16]]) if real.tiles.get("train") else None
    return set_preset(real.set, masks), set_pixel_nm(dataset, real.set)


def eval_ids(dataset, real, n_eval: int | None, profile: str = "cpu") -> list[str]:
    """The test tiles scored: the first `n_eval` of the test split (simulated data), or
    (real data) `n_eval` (default: the profile's `real.max_eval`) spread evenly over the
    held-out test tiles of the real set."""
    from semlab.config import load_profile
    from semlab.train.realsets import held_out_ids

    if real is None:
        return dataset.split("test")[:n_eval or None]
    return held_out_ids(real, ("test",), n_eval or load_profile(profile).real.max_eval)


def evaluate_models(real: np.ndarray, fakes: dict[str, np.ndarray], *, sem_encoder=None, fid_inf: bool = True,
                    n_boot: int = 400, seed: int = 0, cache_dir=None, lpips_net: str = "alex",
                    progress: bool = True) -> tuple[dict[str, list[dict]], dict[str, dict[str, np.ndarray]]]:
    """`evaluate` (paired) for every model against the same real images: (rows per model,
    per-image values per model: {"psnr", "ssim", "ms_ssim", "lpips"?})."""
    from tqdm.auto import tqdm

    from semlab.metrics.evaluate import evaluate

    results, per_image = {}, {}
    for name, fake in tqdm(fakes.items(), desc="models", disable=not progress, leave=False):
        per: dict = {}
        results[name] = evaluate(list(real), list(fake), paired=True, sem_encoder=sem_encoder, fid_inf=fid_inf,
                                 n_boot=n_boot, seed=seed, cache_dir=cache_dir, lpips_net=lpips_net, per_image=per)
        per_image[name] = per
    return results, per_image


SEED_TABLE = ("fid", "lpips", "psnr", "ssim")


def seed_table(results: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The seed project's four columns (FID, LPIPS, PSNR, SSIM), now with CIs."""
    return {m: [r for r in rows if r["metric"] in SEED_TABLE] for m, rows in results.items()}


def sample_size_study(encoder, real_sets: dict[str, tuple[list, list]], ns, *, repeats: int = 3,
                      seed: int = 0) -> dict[str, list[dict]]:
    """FD and KD against the number of images n for pairs of image sets
    ({label: (set_a, set_b)}), e.g. two independent real sets (true distance zero) and
    real vs the physics baseline: FD falls as n grows although nothing changes.
    `encoder`: a SEM encoder (FD_sem / KD_sem) or any ``images -> (N, d) features``
    callable, e.g. :func:`inception_extractor` (FID / KID)."""
    from semlab.metrics.fid import distance_vs_n

    extract = encoder.features if hasattr(encoder, "features") else encoder
    out = {}
    for label, (a, b) in real_sets.items():
        fa, fb = extract(a), extract(b)
        out[label] = distance_vs_n(fa, fb, ns, repeats=repeats, seed=seed)
    return out


def sample_size_studies(spaces: dict[str, tuple], pairs: dict[str, tuple[list, list]], ns, *, repeats: int = 3,
                        seed: int = 0) -> dict[str, dict[str, list[dict]]]:
    """`sample_size_study` in every feature space of `feature_spaces`: {space: curves}."""
    return {what: sample_size_study(features, pairs, ns, repeats=repeats, seed=seed)
            for what, (features, _file) in spaces.items()}


def inception_extractor(precision: str = "fp32"):
    """``(extract, status)``: a callable giving the FID Inception features of a list of
    images, or None and the reason (the file to put into data/weights/) when the official
    weights are missing. Never a randomly initialised network."""
    from semlab.metrics import fid as F
    from semlab.weights import UNVERIFIED_LABEL, InvalidWeights, status

    found, where = status("pt_inception")
    if not found:
        return None, f"unavailable: {where}"
    try:
        model = F.load_inception()
    except InvalidWeights as exc:
        return None, f"unavailable: {exc}"
    return (lambda images: F.inception_features(images, model, precision=precision)), \
        f"pytorch-fid Inception ({model.semlab_weights_path})" + ("" if model.semlab_weights_verified else UNVERIFIED_LABEL)


def worst_indices(per_image: dict[str, np.ndarray], metric: str = "ssim", k: int = 4) -> list[int]:
    """Indices of the k worst images by a per-image metric (lowest SSIM/PSNR/MS-SSIM,
    highest LPIPS)."""
    v = np.asarray(per_image[metric])
    order = np.argsort(-v) if metric == "lpips" else np.argsort(v)
    return [int(i) for i in order[:k]]


def write_comparison(results: dict[str, list[dict]], folder) -> list[Path]:
    """comparison.md / comparison.tex (models x metrics, best marked) and metrics.csv
    (tidy: one row per model and metric, with CIs, n, status and note), atomically."""
    from semlab import io
    from semlab.metrics.evaluate import FIELDS, comparison_table

    folder = Path(folder)
    rows = [{"model": m, **r} for m, rs in results.items() for r in rs]
    ref = [UPPER_BOUND]
    return [io.write_text_atomic(folder / "comparison.md", comparison_table(results, "markdown", ref) + "\n"),
            io.write_text_atomic(folder / "comparison.tex", comparison_table(results, "latex", ref) + "\n"),
            io.write_csv_atomic(folder / "metrics.csv", rows, ["model", *FIELDS])]


def value(results: dict[str, list[dict]], model: str, metric: str):
    """One value of a results dict (None if absent or unavailable)."""
    for r in results.get(model, []):
        if r["metric"] == metric:
            return r["value"]
    return None


def _row_of(results, model, metric):
    return next((r for r in results.get(model, []) if r["metric"] == metric and r["value"] is not None), None)


def summary_text(results: dict[str, list[dict]], metrics=("psnr", "ssim", "lpips", "fid", "kd_sem", "fd_sem"),
                 reference=(UPPER_BOUND,)) -> str:
    """Markdown sentences built from the numbers: per metric the best model and whether
    its lead over the runner-up is outside both 95% intervals; then whether pixel
    metrics and distribution metrics agree on the winner. Model and metric names are
    escaped (`md_escape`)."""
    from semlab.metrics.evaluate import HIGHER_IS_BETTER
    from semlab.textfmt import md_escape as esc

    lines, winners = [], {}
    for m in metrics:
        rows = {n: _row_of(results, n, m) for n in results if n not in reference}
        rows = {n: r for n, r in rows.items() if r is not None}
        if len(rows) < 2:
            continue
        hib = HIGHER_IS_BETTER.get(m, False)
        order = sorted(rows, key=lambda n: rows[n]["value"], reverse=hib)
        a, b = rows[order[0]], rows[order[1]]
        winners[m] = order[0]
        sure = (a["ci_low"] is not None and b["ci_high"] is not None and b["ci_low"] is not None
                and (a["ci_low"] > b["ci_high"] if hib else a["ci_high"] < b["ci_low"]))
        verdict = "clearly (the 95% intervals do not overlap)" if sure else \
            "but the intervals overlap: the data cannot separate them"
        lines.append(f"- **{esc(m)}**: best is {esc(order[0])} ({a['value']:.4g}), ahead of {esc(order[1])} "
                     f"({b['value']:.4g}), {verdict}.")
    pix = [winners[m] for m in ("psnr", "ssim") if m in winners]
    dist = [winners[m] for m in ("kd_sem", "fd_sem", "fid") if m in winners]
    if pix and dist and set(pix).isdisjoint(dist):
        lines.append(f"\nPixel metrics favour **{esc(pix[0])}**, distribution metrics **{esc(dist[0])}**. They measure "
                     "different things: PSNR/SSIM reward predicting the average image (a smooth image scores well "
                     "because noise cannot be predicted), while FD/KD reward images whose texture and noise look "
                     "like real SEM. A generator can win one and lose the other.")
    elif pix and dist:
        lines.append(f"\nPixel and distribution metrics agree on **{esc(pix[0])}**.")
    return "\n".join(lines) if lines else "Fewer than two models could be scored."


# ------------------------------------------------------------------ sample size, metrics.json


# The sample-size study is simulated in every domain (it needs many independent sets of one
# distribution), so its labels say so: never "real" for simulated images.
SAME = "simulated vs simulated (same distribution)"
PHYSICS_PAIR = "simulated vs physics baseline"


def sample_size_sets(preset: str, size: int, n: int, seed: int = 0) -> dict[str, tuple[list, list]]:
    """The two pairs of image sets of the sample-size study, `n` images each: two
    independent simulated sets (true distance zero) and a simulated set against the
    physics baseline rendering the second set's masks."""
    from semlab.data.simulate import render_mask, simulate

    set_a = [simulate(preset, size, (seed, 101, i)).image for i in range(n)]
    sims_b = [simulate(preset, size, (seed, 202, i)) for i in range(n)]
    set_b = [s.image for s in sims_b]
    set_phys = [render_mask(s.mask, preset, (seed, 303, i)).image for i, s in enumerate(sims_b)]
    return {SAME: (set_a, set_b), PHYSICS_PAIR: (set_a, set_phys)}


def feature_spaces(sem_encoder) -> tuple[dict[str, tuple], str | None]:
    """({name: (features, figure name)}, why FID Inception is missing or None): the SEM
    encoder always, the FID Inception network when its weights exist."""
    spaces = {"SEM encoder": (sem_encoder, "distance_vs_n")}
    inception, inception_status = inception_extractor()
    if inception is None:
        return spaces, inception_status
    spaces["FID Inception"] = (inception, "fid_vs_n")
    return spaces, None


UNITS = {"psnr": "dB", "spectral_distance_db": "dB", "mask_epe_nm": "nm"}


def tables_metrics_doc(results: dict[str, list[dict]], generators: dict[str, dict], curves: dict[str, list[dict]],
                       encoder, *, source, n: int, profile: str, figure: str = "models_gallery.png",
                       real=None, physics: tuple[str, float | None] | None = None,
                       ids: list[str] | None = None) -> dict:
    """Notebook 30's metrics.json: `<model>.<metric>` (keys `semlab.metrics.keys`: model
    pix2pix, cyclegan, physics, upper_bound; metric `TABLE_METRICS`) with their CIs from
    `evaluate`; `same_distribution.n<n>.fd_sem`, the mean FD_sem of two same-distribution
    sets of n images (`curves`: `sample_size_study` of the SEM encoder). Metrics without a
    value (missing weights) are named in `extra["unavailable"]` with the reason. Headline:
    PSNR and FID (FD_sem without FID weights) of the trained models, else of the physics
    baseline. `real` (a `RealSplit`): the real set scored; `set` then names it with n
    tiles and n frames of the scored tiles (`ids`; default the whole test split), and
    `extra` records the set, frames and CI caveat; `physics`: the baseline's (preset,
    pixel size)."""
    from semlab.metrics import keys as K
    from semlab.metrics.translators import real_extra
    from semlab.runs import metric, metrics_doc

    metrics, unavailable = {}, {}
    for model, rows in results.items():
        for row in rows:
            if row["metric"] not in K.TABLE_METRICS:
                continue
            k = K.key(K.model_key(model), row["metric"])
            if row["value"] is None or not np.isfinite(row["value"]):
                unavailable[k] = row.get("status") or "no value"
                continue
            metrics[k] = metric(row["value"], row.get("ci_low"), row.get("ci_high"), n=row.get("n"),
                                unit=UNITS.get(row["metric"], ""), note=row.get("note", ""))
    same = curves.get(SAME, [])
    for size in sorted({r["n"] for r in same}):
        fds = [r["fd"] for r in same if r["n"] == size]
        metrics[K.key(K.SAME_DISTRIBUTION, f"n{size}", K.FD_SEM)] = metric(
            float(np.mean(fds)), n=len(fds), note=f"mean over {len(fds)} repeats of two sets of {size} images")
    trained = [K.model_key(m) for m in ("Pix2Pix", "CycleGAN") if m in results] or [K.PHYSICS]
    headline = []
    for m in trained:
        headline += [K.key(m, K.PSNR), K.key(m, K.FID) if K.key(m, K.FID) in metrics else K.key(m, K.FD_SEM)]
    extra = {"profile": profile, "models": list(results),
             "missing_models": [name for name, g in generators.items() if not g["found"]],
             "sem_encoder_sha256": encoder.sha256, "sem_encoder": encoder.describe()}
    if unavailable:
        extra[K.UNAVAILABLE] = unavailable
    if physics is not None:
        extra["physics_preset"], extra["physics_pixel_nm"] = physics
    label = f"{Path(str(source)).name}, test split"
    if real is not None:
        label = real.label("test", ids)
        extra.update(real_extra(real, "test", ids))
    return metrics_doc("30_metric_tables", "real" if real is not None else "sim", label, n, metrics,
                       headline=[k for k in headline if k in metrics][:4], figure=figure, **extra)


_DOMAIN_WORDS = {"sim": "simulated domain (target: simulated images)", "real": "real domain (target: real SEM tiles)"}


def domain_keys(doc: dict | None = None, metrics=("psnr", "ssim", "fd_sem", "kd_sem", "fid")) -> list[str]:
    """The keys the side-by-side table shows: each translator and the physics baseline
    (`<model>.<metric>` for `metrics`), those of `doc` first when given."""
    from semlab.metrics import keys as K

    keys = [K.key(m, x) for m in (K.PIX2PIX, K.CYCLEGAN, K.PHYSICS) for x in metrics]
    if doc:
        return [k for k in keys if k in doc.get("metrics", {})] + [k for k in keys if k not in doc.get("metrics", {})]
    return keys


def domains_markdown(docs: dict[str, dict | None], keys=None, digits: int = 3) -> str:
    """The simulated and the real domain side by side (Markdown): one row per metric key
    present in either doc (or `keys`), one column per domain, value [CI] (n); a header
    naming each domain's set and n, saying which is which. `docs`: {"sim": doc or None,
    "real": doc or None} (`semlab.runs.domain_doc`)."""
    from semlab.textfmt import md_escape as esc

    have = {d: doc for d, doc in docs.items() if doc}
    if not have:
        return "No metrics of either domain yet."
    names = list(keys) if keys else list(dict.fromkeys(k for doc in have.values() for k in doc.get("metrics", {})))
    names = [k for k in names if any(k in doc.get("metrics", {}) for doc in have.values())]
    cols = list(have)

    def cell(doc, k):
        m = doc.get("metrics", {}).get(k)
        if not m or m.get("value") is None:
            return "-"
        s = f"{m['value']:.{digits}g}"
        if m.get("ci_low") is not None and m.get("ci_high") is not None:
            s += f" [{m['ci_low']:.{digits}g}, {m['ci_high']:.{digits}g}]"
        return s + (f" {m['unit']}" if m.get("unit") else "")

    lines = ["| metric | " + " | ".join(esc(_DOMAIN_WORDS.get(d, d)) for d in cols) + " |",
             "|---|" + "---|" * len(cols),
             "| set, n | " + " | ".join(esc(f"{have[d].get('set')}, n={have[d].get('n')}") for d in cols) + " |"]
    lines += [f"| {esc(k)} | " + " | ".join(cell(have[d], k) for d in cols) + " |" for k in names]
    missing = [d for d in docs if not docs[d]]
    if missing:
        lines.append("")
        lines.append("Not run (yet) in this run: " + ", ".join(_DOMAIN_WORDS.get(d, d) for d in missing) + ".")
    return "\n".join(lines)


def inputs_markdown(source, n: int, size: int, generators: dict[str, dict],
                    weights: tuple[str, ...] = ("pt_inception", "alexnet")) -> str:
    """Markdown naming what notebook 30 scores: the dataset, each generator (found or why
    not) and whether the FID / LPIPS weights are present."""
    from semlab.textfmt import md_code, md_escape
    from semlab.weights import status

    lines = [f"- **{md_escape(name)}**: " + md_escape(f"found ({g['where']})" if g["found"] else g["where"])
             for name, g in generators.items()]
    for name in weights:
        ok, info = status(name)
        lines.append(f"- weights {md_code(name)}: " + ("found" if ok else f"missing: {md_escape(info)}"))
    return f"Dataset {md_code(source)}: {n} test pairs of {size} px.\n\n" + "\n".join(lines)
