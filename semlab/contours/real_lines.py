"""Line width, LWR and LER of real line/space SEM images (e.g. the DSA images of
`../shared/data/real_sem/dsa_lines`) from the hybrid's contours: `measure_real_lines`
and its result `RealLines`. No ground truth: the numbers are measurements, not scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semlab.contours.hybrid import HybridExtractor

__all__ = ["RealLines", "measure_real_lines"]


@dataclass
class RealLines:
    """Line-width and LER statistics of real line/space images, per tile and per line,
    and one example tile per image with its contours for display."""

    folder: Path | None
    rows: list[dict]  # per tile: image, row, col, pixel_nm, unit, cd, lwr, ler, n_lines, n_structures, fallback...
    lines: list[dict]  # per line: image, tile, cd, lwr, ler_left, ler_right (in `unit` of the tile)
    examples: list[dict]  # per image: name, image (tile), contours, unit, pixel_nm
    reason: str | None = None  # why there is nothing (missing folder), else None
    hybrid: dict | None = None  # the extractor's describe()

    @property
    def available(self) -> bool:
        return bool(self.rows)

    def per_image(self) -> list[dict]:
        """Mean CD, LWR and LER per image over its lines (and their spread)."""
        out = []
        for name in dict.fromkeys(r["image"] for r in self.rows):
            ln = [x for x in self.lines if x["image"] == name]
            cd = np.array([x["cd"] for x in ln])
            ler = np.array([v for x in ln for v in (x["ler_left"], x["ler_right"]) if np.isfinite(v)])
            lwr = np.array([x["lwr"] for x in ln if np.isfinite(x["lwr"])])
            tiles = [r for r in self.rows if r["image"] == name]
            out.append({"image": name, "unit": tiles[0]["unit"], "pixel_nm": tiles[0]["pixel_nm"], "tiles": len(tiles),
                        "n_lines": len(ln), "cd_mean": float(cd.mean()) if cd.size else float("nan"),
                        "cd_std": float(cd.std(ddof=1)) if cd.size > 1 else float("nan"),
                        "lwr_mean": float(lwr.mean()) if lwr.size else float("nan"),
                        "ler_mean": float(ler.mean()) if ler.size else float("nan"),
                        "ler_std": float(ler.std(ddof=1)) if ler.size > 1 else float("nan"),
                        "fallback_rate": float(np.mean([r["fallback_rate"] for r in tiles]))})
        return out

    def status(self, extractor: HybridExtractor | None = None) -> str:
        """One line: how many tiles of how many images were measured and whether SAM2 was
        used (by `extractor`), or why there is nothing."""
        if not self.rows:
            return f"no real line/space images: {self.reason}"
        sam2 = "" if extractor is None else "; SAM2: " + (
            "used where confident" if extractor.predictor is not None else str(extractor.unavailable_reason))
        return f"{len(self.rows)} tile(s) of {len(self.examples)} image(s){sam2}"

    def markdown(self, digits: int = 2) -> str:
        """Per image: CD, LWR, LER and the fallback rate; image names, units and the reason
        are escaped (`md_escape`)."""
        from semlab.textfmt import md_escape as esc

        if not self.rows:
            return f"_No real line/space images: {esc(self.reason)}_"
        head = ("| image | pixel (nm) | tiles | lines | CD mean +- sd | LWR (3 sigma) | LER (3 sigma) mean +- sd "
                "| fallback rate |")
        lines = [head, "|---|---|---|---|---|---|---|---|"]
        for r in self.per_image():
            u = esc(r["unit"])
            px = f"{r['pixel_nm']:.3f}" if r["pixel_nm"] else "unknown"
            lines.append(f"| {esc(r['image'])} | {px} | {r['tiles']} | {r['n_lines']} | {r['cd_mean']:.{digits}f} +- "
                         f"{r['cd_std']:.{digits}f} {u} | {r['lwr_mean']:.{digits}f} {u} | "
                         f"{r['ler_mean']:.{digits}f} +- "
                         f"{r['ler_std']:.{digits}f} {u} | {r['fallback_rate']:.2f} |")
        return "\n".join(lines)


def measure_real_lines(folder: str | Path | None, *, tile: int = 512, tiles: int = 2,
                       extractor: HybridExtractor | None = None, crop_databar: str = "auto",
                       progress: bool = False) -> RealLines:
    """Contours and line statistics of real line/space SEM images (e.g. the DSA images
    of `../shared/data/real_sem/dsa_lines`).

    Each image is read (`semlab.io.read_image`, pixel size from its TIFF tags), its data
    bar cropped, and `tiles` tiles of `tile` px spread evenly over it are extracted with
    `extractor` (default: `HybridExtractor.from_weights(image_size=512)`: SAM2 zero-shot
    where confident when weights exist, else the fallback with the reason). On every
    tile `measure_cd` gives per line the mean width (CD), LWR and the LER of both edges,
    in nm when the pixel size is known. The classical edge offset is not calibrated for
    real images (no ground truth): CD carries the extractor's unknown edge bias, while
    LWR and LER (spreads) do not. A missing folder gives an empty result with the reason."""
    from tqdm.auto import tqdm

    from semlab.contours.metrics import measure_cd
    from semlab.data.sources import crop_databar as _crop, list_images, tile_image
    from semlab.io import read_image, read_image_meta

    if folder is None or not Path(folder).is_dir():
        return RealLines(Path(folder) if folder else None, [], [], [],
                         reason=f"folder not found: {folder}" if folder else "no folder given")
    ex = extractor if extractor is not None else HybridExtractor.from_weights(image_size=512)
    rows, lines, examples = [], [], []
    for path in tqdm(list_images(folder), desc="real images", disable=not progress):
        img = read_image(path)
        px = read_image_meta(path).get("pixel_size_nm")
        img, _ = _crop(img, crop_databar)
        t = min(int(tile), *img.shape)
        pieces = tile_image(img, t)
        pick = np.unique(np.linspace(0, len(pieces) - 1, max(1, int(tiles))).round().astype(int))
        unit = "nm" if px else "px"
        k = float(px) if px else 1.0
        for j, idx in enumerate(pick):
            r0, c0, crop = pieces[int(idx)]
            crop = np.ascontiguousarray(crop, np.float32)
            hr = ex.extract(crop, pixel_nm=px, source=f"{path.name} tile ({r0}, {c0})")
            cd = measure_cd(hr.contours, crop.shape)
            s = cd.summary()
            rows.append({"image": path.name, "row": int(r0), "col": int(c0), "pixel_nm": px, "unit": unit,
                         "cd": s["cd"] * k, "lwr": s["lwr"] * k, "ler": s["ler"] * k, "n_lines": s["n_lines"],
                         "n_cuts": s["n_cuts"], "orientation": cd.orientation, "n_structures": len(hr.structures),
                         "fallback_rate": hr.fallback_rate, "n_sam2": hr.n_sam2})
            for ln in cd.per_line():
                lines.append({"image": path.name, "tile": j, **{q: (v * k if q in ("cd", "lwr", "ler_left", "ler_right",
                                                                                   "centre") else v)
                                                                  for q, v in ln.items()}})
            if j == 0:
                examples.append({"name": path.name, "image": crop, "contours": hr.contours, "unit": unit,
                                 "pixel_nm": px, "summary": hr.summary()})
    return RealLines(Path(folder), rows, lines, examples, None, ex.describe())
