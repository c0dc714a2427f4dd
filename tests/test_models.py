"""Tests of semlab.models: shapes, parameter counts against the original
pix2pix/CycleGAN figures, receptive fields, skips, dropout, seeding, bf16 and
channels_last, feature outputs, boundary conversions, registries and FLOPs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from semlab.labels import NUM_CLASSES
from semlab.models import (
    DISCRIMINATORS,
    GENERATORS,
    MultiscaleDiscriminator,
    NLayerDiscriminator,
    PixelDiscriminator,
    ResnetGenerator,
    UNetGenerator,
    build_discriminator,
    build_from_description,
    build_generator,
    concat_noise,
    count_flops,
    count_params,
    describe,
    from_model,
    from_one_hot,
    init_weights,
    norm_layer,
    one_hot,
    receptive_field,
    to_model,
    unet_num_downs,
)

SMALL = dict(ngf=16)  # shapes do not depend on the width; keeps the tests fast
SMALL_D = dict(ndf=16)


def _mask_batch(b: int, s: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return one_hot(torch.randint(0, NUM_CLASSES, (b, s, s), generator=g))


# ------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("upsample", ["transposed", "resize"])
@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("name", list(GENERATORS))
def test_generator_shapes(name, size, upsample):
    torch.manual_seed(0)
    g = build_generator(name, size=size, upsample=upsample, **SMALL).eval()
    x = _mask_batch(2, size)
    with torch.no_grad():
        y = g(x)
    assert y.shape == (2, 1, size, size)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all() and y.abs().max() <= 1.0
    has_transposed = any(isinstance(m, nn.ConvTranspose2d) for m in g.modules())
    assert has_transposed == (upsample == "transposed")


def test_generator_default_width_forward():
    torch.manual_seed(0)
    g = build_generator("unet", size=128).eval()
    assert g.num_downs == 7
    with torch.no_grad():
        assert g(_mask_batch(1, 128)).shape == (1, 1, 128, 128)


def _patch_side(s: int, n_layers: int) -> int:
    for _ in range(n_layers):
        s = (s + 2 - 4) // 2 + 1
    return s - 2


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("name", list(DISCRIMINATORS))
def test_discriminator_shapes(name, size):
    torch.manual_seed(0)
    kw = dict(SMALL_D)
    if name == "n_layers":
        kw["n_layers"] = 2
    d = build_discriminator(name, **kw).eval()
    x = torch.randn(2, NUM_CLASSES + 1, size, size)
    with torch.no_grad():
        out = d(x)
    if name == "multiscale":
        assert isinstance(out, list) and len(out) == 2
        for i, o in enumerate(out):
            side = _patch_side(size // 2 ** i, 3)
            assert o.shape == (2, 1, side, side)
    elif name == "pixel":
        assert out.shape == (2, 1, size, size)
    else:
        n = kw.get("n_layers", 3)
        side = _patch_side(size, n)
        assert out.shape == (2, 1, side, side)
    if name == "basic":
        assert _patch_side(256, 3) == 30  # the original's 30x30 patch map at 256 px


def test_cyclegan_discriminator_sees_image_only():
    d = build_discriminator("basic", in_channels=1, norm="instance", **SMALL_D)
    assert d(torch.randn(1, 1, 64, 64)).shape == (1, 1, 6, 6)
    with pytest.raises(ValueError, match="expects"):
        d(torch.randn(1, NUM_CLASSES + 1, 64, 64))


def test_size_errors():
    assert unet_num_downs(256) == 8 and unet_num_downs(128) == 7
    for bad in (100, 96, 0, 2, 64.5):
        with pytest.raises(ValueError, match="power of two"):
            build_generator("unet", size=bad, **SMALL)
    g = build_generator("unet", size=64, **SMALL)
    with pytest.raises(ValueError, match="divisible by 64"):
        g(_mask_batch(1, 96))
    g(_mask_batch(1, 128))  # a multiple of 2**num_downs is fine (2x2 bottleneck)
    r = build_generator("resnet_6blocks", **SMALL)
    with pytest.raises(ValueError, match="divisible by 4"):
        r(_mask_batch(1, 66))
    with pytest.raises(ValueError, match="channels"):
        g(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="too small"):
        build_discriminator("basic", **SMALL_D)(torch.randn(1, NUM_CLASSES + 1, 16, 16))


# --------------------------------------------------------------- parameter counts
# Closed forms of the original networks (3 -> 3 channels), written out layer by layer
# here, independent of the module code; the original code prints them rounded to
# 1e-3 M: unet_256 54.414 M, resnet_9blocks 11.378 M, basic D 2.769 M (pix2pix: 6
# input channels, batch norm) and 2.765 M (CycleGAN: 3 channels, instance norm).


def _unet256_closed_form(i=3, o=3, f=64):
    conv = lambda a, b: a * b * 16  # 4x4 kernels, no bias (batch norm)
    bn = lambda c: 2 * c
    c = [f, 2 * f, 4 * f, 8 * f, 8 * f, 8 * f, 8 * f, 8 * f]
    down = conv(i, c[0]) + sum(conv(c[k - 1], c[k]) + bn(c[k]) for k in range(1, 7)) + conv(c[6], c[7])
    up = conv(c[7], c[6]) + bn(c[6])  # innermost: no skip at its input
    up += sum(conv(2 * c[k], c[k - 1]) + bn(c[k - 1]) for k in range(1, 7))
    up += conv(2 * c[0], o) + o  # outermost transposed conv keeps its bias
    return down + up


def _resnet_closed_form(i=3, o=3, f=64, n_blocks=9):
    conv = lambda a, b, k: a * b * k * k + b  # instance norm: convs keep their bias
    n = conv(i, f, 7) + conv(f, 2 * f, 3) + conv(2 * f, 4 * f, 3)
    n += n_blocks * 2 * conv(4 * f, 4 * f, 3)
    n += conv(4 * f, 2 * f, 3) + conv(2 * f, f, 3) + conv(f, o, 7)
    return n


def _patchgan_closed_form(i, f=64, batch=True):
    chans = [i, f, 2 * f, 4 * f, 8 * f]
    n = i * f * 16 + f  # first conv: bias, no norm
    for a, b in zip(chans[1:-1], chans[2:]):
        n += a * b * 16 + (2 * b if batch else b)  # BN affine or conv bias
    return n + 8 * f * 16 + 1


def test_param_counts_match_original():
    with torch.device("meta"):  # no allocation, no forward pass
        unet = UNetGenerator(3, 3, size=256, norm="batch")
        res9 = ResnetGenerator(3, 3, n_blocks=9, norm="instance")
        res6 = ResnetGenerator(3, 3, n_blocks=6, norm="instance")
        d_p2p = NLayerDiscriminator(3 + 3, n_layers=3, norm="batch")
        d_cyc = NLayerDiscriminator(3, n_layers=3, norm="instance")
    assert count_params(unet) == _unet256_closed_form() == 54_413_955
    assert round(count_params(unet) / 1e6, 3) == 54.414
    assert count_params(res9) == _resnet_closed_form() == 11_378_179
    assert round(count_params(res9) / 1e6, 3) == 11.378
    assert count_params(res6) == _resnet_closed_form(n_blocks=6)
    assert count_params(d_p2p) == _patchgan_closed_form(6) == 2_768_705
    assert round(count_params(d_p2p) / 1e6, 3) == 2.769
    assert count_params(d_cyc) == _patchgan_closed_form(3, batch=False) == 2_764_737
    assert round(count_params(d_cyc) / 1e6, 3) == 2.765


def test_receptive_field():
    assert receptive_field(3) == 70
    assert receptive_field(2) == 34
    assert receptive_field(1) == 16
    assert receptive_field(NLayerDiscriminator(n_layers=3, **SMALL_D)) == 70
    assert receptive_field(NLayerDiscriminator(n_layers=2, **SMALL_D)) == 34
    assert receptive_field(PixelDiscriminator(**SMALL_D)) == 1
    assert receptive_field(MultiscaleDiscriminator(num_D=3, **SMALL_D)) == [70, 141, 283]


def test_receptive_field_is_real():
    """Perturbing an input pixel changes exactly the logits whose 70x70 window holds it."""
    torch.manual_seed(0)
    d = NLayerDiscriminator(1, n_layers=3, norm="none", **SMALL_D).double()
    x = torch.randn(1, 1, 96, 96, dtype=torch.double, requires_grad=True)
    out = d(x)
    out[0, 0, 0, 0].backward()
    hit = (x.grad[0, 0].abs() > 0).nonzero()
    span = hit.max(0).values - hit.min(0).values + 1
    # logit (0, 0) sees input rows/cols -stride... : window 70 wide minus the padding
    # (1 + 2 + 4 + 8 + 8 = 23 pixels of zero padding on the top/left)
    assert span.tolist() == [70 - 23, 70 - 23]


# ---------------------------------------------------------------- U-Net behaviour


def test_unet_outermost_skip_carries_full_resolution_information():
    """Cut everything below the first level: the output still depends on the input
    pixel, locally, through the outermost skip connection alone."""
    torch.manual_seed(0)
    g = build_generator("unet", size=64, dropout=False, **SMALL).eval()
    level1 = g.levels()[1]
    ngf = SMALL["ngf"]

    def cut_deep_path(module, inputs, output):  # keep the skip half, zero the rest
        return torch.cat([output[:, :ngf], torch.zeros_like(output[:, ngf:])], dim=1)

    handle = level1.register_forward_hook(cut_deep_path)
    x = _mask_batch(1, 64).requires_grad_(True)
    g(x)[0, 0, 32, 32].backward()
    handle.remove()
    grad = x.grad.abs().sum(1)[0]
    assert grad[31:34, 31:34].sum() > 0  # depends on the pixel it sits on
    assert grad[:24].sum() == 0 and grad[:, :24].sum() == 0  # and only on its neighbourhood
    near = grad.nonzero()
    assert (near - 32).abs().max() <= 3
    # without the cut the same output pixel sees far-away pixels through the bottleneck
    x.grad = None
    g(x)[0, 0, 32, 32].backward()
    assert x.grad.abs().sum(1)[0, :24].sum() > 0


@pytest.mark.parametrize("dropout", [True, False])
def test_dropout_train_vs_eval(dropout):
    torch.manual_seed(0)
    g = build_generator("unet", size=64, dropout=dropout, **SMALL)
    assert bool(g.dropout_levels) == dropout
    assert any(isinstance(m, nn.Dropout) for m in g.modules()) == dropout
    x = _mask_batch(2, 64)
    g.train()
    with torch.no_grad():
        a, b = g(x), g(x)
    assert (not torch.equal(a, b)) == dropout
    g.eval()
    with torch.no_grad():
        assert torch.equal(g(x), g(x))


def test_dropout_levels():
    # three levels just outside the bottleneck: at 256 exactly the original's levels
    assert UNetGenerator(size=256, ngf=8).dropout_levels == [4, 5, 6]
    assert UNetGenerator(size=128, ngf=8).dropout_levels == [3, 4, 5]
    assert UNetGenerator(size=128, ngf=8, dropout_blocks=None).dropout_levels == [4, 5]
    assert UNetGenerator(size=256, ngf=8, dropout_blocks=None).dropout_levels == [4, 5, 6]


def test_seed_determinism():
    def weights(seed, name):
        torch.manual_seed(seed)
        return build_generator(name, size=64, **SMALL).state_dict()

    for name in ("unet", "resnet_6blocks"):
        a, b, c = weights(1, name), weights(1, name), weights(2, name)
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert any(not torch.equal(a[k], c[k]) for k in a)


def test_noise_channel():
    torch.manual_seed(0)
    g = build_generator("unet", size=64, noise_channel="normal", dropout=False, **SMALL).eval()
    first = next(m for m in g.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == NUM_CLASSES + 1
    x = _mask_batch(1, 64)
    with torch.no_grad():
        assert not torch.equal(g(x), g(x))  # fresh noise each call
        xz = concat_noise(x, "normal", generator=torch.Generator().manual_seed(3))
        assert xz.shape == (1, NUM_CLASSES + 1, 64, 64)
        assert torch.equal(g(xz), g(xz))  # noise supplied by the caller
    u = concat_noise(x, "uniform")[:, -1]
    assert u.min() >= -1 and u.max() <= 1
    r = build_generator("resnet_9blocks", noise_channel=True, **SMALL)
    assert r(x).shape == (1, 1, 64, 64)


# -------------------------------------------------- bf16 autocast and channels_last


@pytest.mark.parametrize("mode", ["bf16", "channels_last", "both"])
def test_bf16_and_channels_last(mode):
    torch.manual_seed(0)
    nets = [
        build_generator("unet", size=64, **SMALL),
        build_generator("resnet_6blocks", **SMALL),
    ]
    ds = [
        build_discriminator("basic", **SMALL_D),
        build_discriminator("pixel", **SMALL_D),
        build_discriminator("multiscale", **SMALL_D),
    ]
    cl = mode in ("channels_last", "both")
    use_bf16 = mode in ("bf16", "both")
    x = _mask_batch(2, 64)
    if cl:
        x = x.to(memory_format=torch.channels_last)
        for n in nets + ds:
            n.to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
        for g in nets:
            y = g(x)
            assert y.shape == (2, 1, 64, 64) and torch.isfinite(y).all()
            if use_bf16:
                assert y.dtype == torch.bfloat16
            pair = torch.cat([x, y.to(x.dtype)], 1)
            loss = y.float().mean()
            for d in ds:
                out = d(pair)
                outs = out if isinstance(out, list) else [out]
                assert all(torch.isfinite(o).all() for o in outs)
                assert outs[0].shape[:2] == (2, 1)
                loss = loss + sum(o.float().mean() for o in outs)
            loss.backward()
    for n in nets + ds:
        for p in n.parameters():
            if p.grad is not None:
                assert torch.isfinite(p.grad).all()


# ------------------------------------------------------------------- features


def test_feature_outputs():
    torch.manual_seed(0)
    x = torch.randn(2, NUM_CLASSES + 1, 128, 128)
    d = build_discriminator("basic", **SMALL_D)
    logits, feats = d(x, return_features=True)
    assert torch.equal(logits, d(x))  # same logits with or without features
    assert len(feats) == 4 and [f.shape[1] for f in feats] == [16, 32, 64, 128]
    ms = build_discriminator("multiscale", num_D=3, return_features=True, **SMALL_D)
    outs, fl = ms(x)
    assert len(outs) == 3 and len(fl) == 3
    assert all(len(f) == 4 for f in fl)
    assert [o.shape[-1] for o in outs] == [14, 6, 2]
    assert [f[0].shape[-1] for f in fl] == [64, 32, 16]
    assert isinstance(ms(x, return_features=False), list)
    d2 = build_discriminator("n_layers", n_layers=2, return_features=True, **SMALL_D)
    assert len(d2(x)[1]) == 3


# ------------------------------------------------------- boundary conversions


def test_one_hot_round_trip():
    rng = np.random.default_rng(0)
    m = rng.integers(0, NUM_CLASSES, (32, 48)).astype(np.uint8)
    oh = one_hot(m)
    assert oh.shape == (1, NUM_CLASSES, 32, 48) and oh.dtype == torch.float32
    assert torch.equal(oh.sum(1), torch.ones(1, 32, 48))
    assert np.array_equal(from_one_hot(oh)[0].numpy(), m)
    mb = torch.from_numpy(rng.integers(0, NUM_CLASSES, (3, 16, 16)))
    assert torch.equal(from_one_hot(one_hot(mb)), mb)
    with pytest.raises(ValueError, match="outside"):
        one_hot(np.full((4, 4), NUM_CLASSES))
    with pytest.raises(ValueError, match="integer"):
        one_hot(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="shape"):
        one_hot(np.zeros((1, 1, 4, 4), np.int64))


def test_to_from_model():
    img = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    x = to_model(img)
    assert x.shape == (1, 1, 8, 8) and x.dtype == torch.float32
    assert x.min() == -1 and x.max() == 1
    assert torch.allclose(from_model(x)[0, 0], torch.from_numpy(img), atol=1e-7)
    u8 = (img * 255).round().astype(np.uint8)
    assert torch.allclose(to_model(u8), x, atol=1 / 255)
    assert to_model(torch.zeros(4, 8, 8)).shape == (4, 1, 8, 8)
    assert from_model(torch.tensor([-3.0, 3.0])).tolist() == [0.0, 1.0]


# -------------------------------------------------------- registries and init


def test_key_errors_list_valid_names():
    with pytest.raises(KeyError) as e:
        build_generator("unet_512")
    assert all(n in str(e.value) for n in ("unet", "resnet_6blocks", "resnet_9blocks"))
    with pytest.raises(KeyError) as e:
        build_discriminator("patch")
    assert all(n in str(e.value) for n in ("basic", "n_layers", "pixel", "multiscale"))
    with pytest.raises(KeyError, match="batch, instance, none"):
        norm_layer("group")
    with pytest.raises(KeyError, match="normal, xavier, kaiming, orthogonal"):
        init_weights(nn.Linear(2, 2), "uniform")
    with pytest.raises(KeyError, match="transposed, resize"):
        build_generator("unet", size=64, upsample="bilinear")
    with pytest.raises(ValueError, match="n_layers=3"):
        build_discriminator("basic", n_layers=2)


def test_norm_layers():
    bn, inn, none = norm_layer("batch")(8), norm_layer("instance")(8), norm_layer("none")(8)
    assert isinstance(bn, nn.BatchNorm2d) and bn.affine and bn.track_running_stats
    assert isinstance(inn, nn.InstanceNorm2d) and not inn.affine and not inn.track_running_stats
    assert isinstance(none, nn.Identity)


@pytest.mark.parametrize("init", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_weights(init):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(64, 128, 3), nn.BatchNorm2d(128), nn.Linear(256, 256))
    init_weights(net, init, gain=0.02)
    conv, bn, lin = net
    assert conv.bias.abs().sum() == 0 and lin.bias.abs().sum() == 0
    assert abs(bn.weight.mean() - 1) < 0.01 and abs(bn.weight.std() - 0.02) < 0.01
    assert bn.bias.abs().sum() == 0
    std = conv.weight.std().item()
    fan_in, fan_out = 64 * 9, 128 * 9
    expected = {
        "normal": 0.02,
        "xavier": 0.02 * (2 / (fan_in + fan_out)) ** 0.5,
        "kaiming": (2 / fan_in) ** 0.5,
    }.get(init)
    if expected is not None:
        assert abs(std / expected - 1) < 0.05
    else:
        w = lin.weight  # orthogonal: rows orthogonal, scaled by gain
        assert torch.allclose(w @ w.T, 0.02**2 * torch.eye(256), atol=1e-6)


def test_describe_round_trip():
    torch.manual_seed(0)
    for net in (
        build_generator("resnet_9blocks", upsample="resize", **SMALL),
        build_generator("unet", size=64, norm="instance", **SMALL),
        build_discriminator("multiscale", num_D=3, **SMALL_D),
        build_discriminator("basic", in_channels=1, **SMALL_D),
    ):
        desc = describe(net)
        json.dumps(desc)  # JSON-ready
        assert desc["params"] == count_params(net) > 0
        again = build_from_description(json.loads(json.dumps(desc)))
        assert type(again) is type(net) and describe(again)["options"] == desc["options"]
        again.load_state_dict(net.state_dict())  # same architecture


# ---------------------------------------------------------------------- FLOPs


def test_count_flops_linear():
    lin = nn.Linear(32, 16)
    x = torch.randn(8, 32)
    assert count_flops(lin, x) == 2 * 32 * 16 * 8
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_flops(conv, torch.randn(2, 3, 10, 10)) == 2 * 2 * 8 * 100 * 3 * 9


# ---------------------------------------------------------------------- mask encoding on the trainer


def _old_mask_input(masks: np.ndarray, cyclegan: bool) -> torch.Tensor:
    """The formula the preview, generate and the training loop each wrote out before."""
    t = torch.from_numpy(masks.astype(np.int64))
    x = torch.nn.functional.one_hot(t, NUM_CLASSES).permute(0, 3, 1, 2).float()
    return x * 2 - 1 if cyclegan else x


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_encode_mask_is_the_old_formula_and_the_trainer_class_decides(model):
    from semlab.train import TrainConfig
    from semlab.train.cyclegan import CycleGANTrainer
    from semlab.train.loop import make_trainer, to_tensors, trainer_class
    from semlab.train.pix2pix import Pix2PixTrainer

    cls = trainer_class(model)
    assert cls is {"pix2pix": Pix2PixTrainer, "cyclegan": CycleGANTrainer}[model]
    assert cls.paired is cls.generate_train_mode is (model == "pix2pix")
    masks = np.random.default_rng(0).integers(0, NUM_CLASSES, (3, 8, 8)).astype(np.uint8)
    old = _old_mask_input(masks, model == "cyclegan")
    new = cls.encode_mask(masks)
    assert new.dtype == torch.float32 and torch.equal(new, old)
    assert new.stride() == old.stride()  # the same memory layout, so the same convolution kernels run
    assert set(torch.unique(new).tolist()) == ({0.0, 1.0} if model == "pix2pix" else {-1.0, 1.0})
    assert torch.equal(cls.encode_mask(masks[0]), old[:1])  # one (H, W) label map
    assert torch.equal(cls.encode_mask(torch.from_numpy(masks)), old)
    # training feeds one-hot batches that the trainer moves into the same domain
    trainer = make_trainer(TrainConfig(model=model, dataset="unused", out="unused", ngf=4, ndf=4), 8)
    assert isinstance(trainer, cls) and torch.equal(trainer.encode_mask(masks), old)
    onehot, _ = to_tensors(SimpleNamespace(images=np.zeros((3, 8, 8), np.uint8), masks=masks), np.arange(3))
    assert torch.equal(trainer.encode_onehot(onehot), old)
    with pytest.raises(ValueError, match="outside 0..3"):
        cls.encode_mask(np.full((8, 8), NUM_CLASSES))
    with pytest.raises(ValueError, match="valid: pix2pix, cyclegan"):
        trainer_class("stylegan")
