"""GAN losses on discriminator logits (single tensors or lists from multi-scale Ds)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _as_list(pred):
    return pred if isinstance(pred, (list, tuple)) else [pred]


def _logits(p):
    # a D that returns features gives (features..., logits) per scale: the last is the logit map
    return p[-1] if isinstance(p, (list, tuple)) else p


def gan_loss(pred, target_real: bool, mode: str, for_discriminator: bool = True) -> torch.Tensor:
    """vanilla: BCE with logits; lsgan: MSE to 1/0; hinge: max(0, 1 -/+ D) for D, -D for G.
    Averaged over the scales of a multi-scale D."""
    losses = []
    for p in _as_list(pred):
        x = _logits(p).float()
        if mode == "vanilla":
            t = torch.ones_like(x) if target_real else torch.zeros_like(x)
            losses.append(F.binary_cross_entropy_with_logits(x, t))
        elif mode == "lsgan":
            losses.append(F.mse_loss(x, torch.ones_like(x) if target_real else torch.zeros_like(x)))
        elif mode == "hinge":
            if for_discriminator:
                losses.append(F.relu(1 - x).mean() if target_real else F.relu(1 + x).mean())
            else:
                losses.append(-x.mean())
        else:
            raise ValueError(f"gan mode {mode!r}; valid: vanilla, lsgan, hinge")
    return sum(losses) / len(losses)


def feature_matching(feats_fake, feats_real) -> torch.Tensor:
    """pix2pixHD's feature-matching loss: L1 between D's intermediate features for fake
    and real inputs (all layers but the logits, all scales), averaged."""
    terms = []
    for ff, fr in zip(_as_list(feats_fake), _as_list(feats_real)):
        ff = ff if isinstance(ff, (list, tuple)) else [ff]
        fr = fr if isinstance(fr, (list, tuple)) else [fr]
        for a, b in zip(ff[:-1], fr[:-1]):
            terms.append(F.l1_loss(a.float(), b.detach().float()))
    return sum(terms) / max(len(terms), 1)
