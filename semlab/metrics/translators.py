"""One trained mask -> SEM translator on the test split (notebooks 20 and 21): its images,
PSNR/SSIM with bootstrap CIs against the target images (real, or "simulated (target)"), the noise-free upper bound,
mask fidelity (mIoU, EPE in nm: `semlab.metrics.fidelity`) and the notebook's `metrics.json`
(`translator_metrics_doc`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from semlab.metrics import keys as K
from semlab.metrics.pixel import ci_table, format_ci_table, paired_scores
from semlab.runs import metric, metrics_doc

__all__ = ["TranslatorScores", "score_translator", "translator_metrics_doc", "real_extra", "UPPER_BOUND_ROW",
           "train_sets", "sets_markdown"]

UPPER_BOUND_ROW = "noise-free image vs simulated (target): upper bound"  # simulated data only


@dataclass
class TranslatorScores:
    """Test masks, real and generated images (N, H, W) and `table`: {comparison: {metric:
    (mean, ci_low, ci_high)}} with rows `vs_real`, `UPPER_BOUND_ROW` and `vs_clean` (the
    last two only when the dataset has noise-free images)."""

    label: str
    target: str  # "simulated (target)" or "real": what the generated images are scored against
    ids: list[str]
    masks: np.ndarray
    real: np.ndarray
    fake: np.ndarray
    table: dict[str, dict[str, tuple[float, float, float]]]
    fidelity: dict | None = None  # {label: FidelityScores, fidelity.CEILING: FidelityScores}

    @property
    def vs_real(self) -> str:
        return f"{self.label} vs {self.target} image"

    @property
    def vs_clean(self) -> str:
        return f"{self.label} vs noise-free image"

    @property
    def has_bound(self) -> bool:
        return UPPER_BOUND_ROW in self.table

    def text(self) -> str:
        out = format_ci_table(self.table, f"comparison (test split, n={len(self.ids)})")
        for name, s in (self.fidelity or {}).items():
            out += f"\nmask fidelity, {name}: {s.text()}"
        return out


def score_translator(generator, dataset, ids: Sequence[str], label: str, *, seed: int = 0,
                     fidelity: bool = True) -> TranslatorScores:
    """Run `generator` (a `semlab.train.generate.Generator`) on the masks of `ids` and score
    its images against the target ones (`paired_scores`, bootstrap CIs by `ci_table`); on
    simulated data also the noise-free image against the simulated target (the upper bound) and
    the generated images against the noise-free ones. With `fidelity`, the mask fidelity
    of the generated images and of the target images (the segmenter's ceiling), rows
    `mask_miou` / `mask_epe_nm` of the model's comparison (`semlab.metrics.fidelity`;
    on simulated data the segmenter's edge offset is fitted on training pairs first)."""
    ids = list(ids)
    masks = np.stack([dataset.mask(i) for i in ids])
    real = np.stack([dataset.image(i) for i in ids])
    fake = generator(masks, seed=seed)
    simulated = dataset.clean(ids[0]) is not None  # only the simulator knows the noise-free image
    target = "simulated (target)" if simulated else "real"
    rows = {f"{label} vs {target} image": paired_scores(fake, real)}
    if simulated:
        clean = np.stack([dataset.clean(i) for i in ids])
        rows[UPPER_BOUND_ROW] = paired_scores(clean, real)
        rows[f"{label} vs noise-free image"] = paired_scores(fake, clean)
    table, fid = ci_table(rows), None
    if fidelity:
        from semlab.metrics import fidelity as F

        args = F.scoring_args(dataset, ids)  # edge calibration on simulated training pairs only
        fid = F.fidelity_table({label: fake}, masks, real, n_boot=1000, seed=seed, progress=False, **args)
        table[f"{label} vs {target} image"].update({K.MASK_MIOU: fid[label].miou, K.MASK_EPE: fid[label].epe})
    return TranslatorScores(label, target, ids, masks, real, fake, table, fid)


def _m(ci: tuple[float, float, float], n: int, unit: str = "") -> dict:
    return metric(ci[0], ci[1], ci[2], n=n, unit=unit)


def translator_metrics_doc(notebook: str, kind: str, scores: TranslatorScores, *, source: str | Path,
                           step_s: dict[str, float] | None = None, figure: str = "test_grid.png",
                           real=None, **extra: Any) -> dict:
    """The metrics.json doc of a training notebook: `<kind>.psnr`/`.ssim` against the real
    images, `upper_bound.psnr`/`.ssim`, `<kind>.vs_noise_free.psnr`/`.ssim` (mean and 95%
    bootstrap CI over test images), `psnr_gap_db`/`ssim_gap` (upper bound minus model) and,
    with `step_s` ({"bf16": s, "fp32": s}), the median step times. `extra`: settings
    (profile, steps, precision, ...). `real` (a `semlab.train.realsets.RealSplit`): the
    real set scored; the doc's `set` then names it with n tiles and n frames of the test
    split, and `extra` records the set, its frames and the CI caveat."""
    n, t = len(scores.ids), scores.table
    units = {K.PSNR: "dB", K.SSIM: ""}
    metrics = {K.key(kind, m): _m(t[scores.vs_real][m], n, u) for m, u in units.items()}
    if scores.fidelity:
        from semlab.metrics import fidelity as F

        metrics.update(F.fidelity_doc_metrics(scores.fidelity, only=(scores.label,), entity=kind))
        metrics.update(F.fidelity_doc_metrics(scores.fidelity))
    if scores.has_bound:
        bound = t[UPPER_BOUND_ROW]
        metrics.update({K.key(K.UPPER_BOUND, m): _m(bound[m], n, u) for m, u in units.items()})
        metrics.update({K.key(kind, K.VS_NOISE_FREE, m): _m(t[scores.vs_clean][m], n, u) for m, u in units.items()})
        metrics[K.PSNR_GAP] = metric(bound[K.PSNR][0] - t[scores.vs_real][K.PSNR][0], n=n, unit="dB",
                                     note="upper bound minus model")
        metrics[K.SSIM_GAP] = metric(bound[K.SSIM][0] - t[scores.vs_real][K.SSIM][0], n=n,
                                     note="upper bound minus model")
    if step_s:
        metrics[K.STEP_S_BF16] = metric(step_s["bf16"], unit="s", note="median training step")
        metrics[K.STEP_S_FP32] = metric(step_s["fp32"], unit="s", note="median training step")
    headline = [k for k in (K.key(kind, K.PSNR), K.key(K.UPPER_BOUND, K.PSNR), K.key(kind, K.SSIM), K.PSNR_GAP)
                if k in metrics]
    label = f"{Path(source).name}, test split"
    if real is not None:
        label = real.label("test", scores.ids)
        extra.update(real_extra(real, "test", scores.ids))
    return metrics_doc(notebook, "sim" if scores.has_bound else "real", label, n,
                       metrics, headline=headline, figure=figure, **extra)


def real_extra(real, split: str = "test", ids: Sequence[str] | None = None) -> dict[str, Any]:
    """The `extra` facts of a real-domain metrics doc: the set, n tiles, n frames and the
    frames of the tiles scored (`ids`; default: all of `split`), the frames the models
    were trained on, and the CI caveat."""
    from semlab.train.realsets import CI_CAVEAT

    ids = list(real.tiles.get(split, [])) if ids is None else list(ids)
    frames = real.frames_of(ids)
    return {"real_set": real.set, "n_tiles": len(ids), "n_frames": len(frames), "frames": frames,
            "train_frames": real.frames.get("train", []), "ci_note": CI_CAVEAT}


def train_sets(cfg, sets: Mapping[str, tuple[Path, Any]], label: str, *, seed: int = 0,
               progress: bool = False) -> list[dict[str, Any]]:
    """One model per further real set (`sets`: {set: (dataset, RealSplit)}, from
    `semlab.train.realsets.other_sets`): `cfg` (a TrainConfig) retrained on each set's
    dataset into `<cfg.out>-<set>`, scored on the set's held-out test tiles. Rows: set, n
    tiles, n frames, PSNR and SSIM with 95% CIs, generator path."""
    from dataclasses import replace

    from semlab.data.datasets import load_dataset
    from semlab.train import train
    from semlab.train.checkpoint import latest_checkpoint
    from semlab.train.generate import Generator

    rows = []
    for name, (folder, split) in sets.items():
        c = replace(cfg, dataset=str(folder), out=f"{cfg.out}-{name}")
        res = train(c, progress=progress)
        gen = res.generator_path or latest_checkpoint(Path(c.out) / "checkpoints")
        scores = score_translator(Generator(gen), load_dataset(folder), split.tiles["test"], label, seed=seed)
        n_tiles, n_frames = split.n("test")
        rows.append({"set": name, "n_tiles": n_tiles, "n_frames": n_frames, "generator": str(gen),
                     **{m: [float(x) for x in scores.table[scores.vs_real][m]] for m in (K.PSNR, K.SSIM)}})
    return rows


def sets_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows of `train_sets` as Markdown (or a sentence when there are none)."""
    from semlab.textfmt import md_escape

    if not rows:
        return "No further real set is trained in this profile and domain (the cpu profile trains the line set only)."
    lines = ["| real set | test tiles | frames | PSNR (dB) | SSIM |", "|---|---|---|---|---|"]
    for r in rows:
        p, s = r[K.PSNR], r[K.SSIM]
        lines.append(f"| {md_escape(r['set'])} | {r['n_tiles']} | {r['n_frames']} | {p[0]:.2f} [{p[1]:.2f}, {p[2]:.2f}] "
                     f"| {s[0]:.3f} [{s[1]:.3f}, {s[2]:.3f}] |")
    return "\n".join(lines)
