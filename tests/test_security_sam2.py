"""SAM2 checkpoints are untrusted files: semlab reads them itself with
`torch.load(..., weights_only=True)`, checks `{"model": state_dict}` and loads it strictly.

A crafted pickle saved under the official file name, whose unpickling would create a
marker file, must leave the marker absent and give "<file> is not a valid SAM2
checkpoint (<reason>)" through every way semlab loads SAM2 (the segmentation backend,
the contours predictor, the command line, the contours experiment); so must a truncated
file, a text file and checkpoints of the wrong shape.
"""

import pickle

import numpy as np
import pytest

pytest.importorskip("sam2")
torch = pytest.importorskip("torch")

from semlab.contours.predictor import Sam2Predictor, load_sam2_model  # noqa: E402
from semlab.segment.sam2_backend import Sam2Segmenter, Sam2Settings  # noqa: E402
from semlab.segment.sam2_model import Sam2CheckpointError, read_sam2_checkpoint  # noqa: E402

MODEL = "sam2.1_hiera_tiny"
OFFICIAL = "sam2.1_hiera_tiny.pt"
FAST = dict(model=MODEL, image_size=512, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)


class _Payload:
    """Unpickling this calls open(marker, "w"): the file appears if anything unpickles it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_folder(tmp_path, kind: str = "zip"):
    """(folder holding the crafted official file, the file, the marker it would create)."""
    folder = tmp_path / f"evil-{kind}"
    folder.mkdir()
    marker = tmp_path / f"PWNED-{kind}"
    path = folder / OFFICIAL
    obj = {"model": _Payload(marker)}
    if kind == "zip":  # torch's own zip format, the pickle inside
        torch.save(obj, path)
    else:  # a bare pickle (torch's legacy, non-zip branch)
        path.write_bytes(pickle.dumps(obj, protocol=2))
    return folder, path, marker


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("SEMLAB_OFFLINE", "1")
    monkeypatch.setenv("SEMLAB_DATA", str(tmp_path / "data"))  # no data/weights/ of the repository

    def use(folder):
        monkeypatch.setenv("SEMLAB_WEIGHTS", str(folder))

    return use


@pytest.fixture
def load_calls(monkeypatch):
    """Every torch.load call's weights_only argument, whoever makes it."""
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


def _is_clear(err, path) -> str:
    msg = str(err)
    assert msg.startswith(f"{path} is not a valid SAM2 checkpoint (") and msg.endswith(")"), msg
    assert "\n" not in msg and "Traceback" not in msg
    return msg


@pytest.mark.parametrize("kind", ["zip", "raw"])
def test_crafted_pickle_is_refused_by_segmenter_and_predictor(kind, tmp_path, env, load_calls):
    folder, path, marker = _evil_folder(tmp_path, kind)
    env(folder)
    with pytest.raises(Sam2CheckpointError) as seg_err:
        Sam2Segmenter(Sam2Settings(**FAST))
    with pytest.raises(Sam2CheckpointError) as pred_err:
        Sam2Predictor(MODEL, image_size=512)
    with pytest.raises(Sam2CheckpointError):
        Sam2Predictor(MODEL, checkpoint=path, image_size=512)  # explicit file, same answer
    assert not marker.exists()
    for e in (seg_err.value, pred_err.value):
        msg = _is_clear(e, path)
        if kind == "zip":
            assert "io.open" in msg and "weights_only=True" in msg
        else:
            assert "weights_only" in msg
        assert e.path == path
    assert load_calls and all(w is True for w in load_calls)  # never a full unpickling


def test_the_crafted_file_really_runs_code_when_unpickled_unsafely(tmp_path):
    """The control: without weights_only the same file does create the marker, so the
    test above would fail if semlab (or sam2 on its behalf) unpickled it fully."""
    _, path, marker = _evil_folder(tmp_path, "zip")
    torch.load(path, map_location="cpu", weights_only=False)
    assert marker.exists()


def test_truncated_text_and_empty_files_name_the_file(tmp_path, env, sam2_weights_folder):
    good = (sam2_weights_folder / OFFICIAL).read_bytes()
    cases = {"truncated": good[: len(good) // 2], "text": b"this is a README, not a checkpoint\n", "empty": b""}
    reasons = {}
    for name, data in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / OFFICIAL).write_bytes(data)
        env(folder)
        with pytest.raises(Sam2CheckpointError) as seg_err:
            Sam2Segmenter(Sam2Settings(**FAST))
        with pytest.raises(ValueError) as pred_err:  # Sam2CheckpointError is a ValueError
            load_sam2_model(MODEL, None, 512)
        assert str(seg_err.value) == str(pred_err.value)
        reasons[name] = _is_clear(seg_err.value, folder / OFFICIAL)
    assert "truncated" in reasons["truncated"]
    assert "not a PyTorch file" in reasons["text"] and "this is a RE" in reasons["text"]
    assert "empty" in reasons["empty"]


def test_wrong_contents_and_wrong_model_size(tmp_path, sam2_weights_folder):
    bad = {
        "list.pt": [torch.zeros(2)],
        "nomodel.pt": {"state_dict": {"w": torch.zeros(2)}},
        "nontensor.pt": {"model": {"w": 1.5}},
        "foreign.pt": {"model": {"w": torch.zeros(2)}},
    }
    for name, obj in bad.items():
        torch.save(obj, tmp_path / name)
    for name in ("list.pt", "nomodel.pt", "nontensor.pt"):  # refused before any model is built
        with pytest.raises(Sam2CheckpointError) as e:
            read_sam2_checkpoint(tmp_path / name)
        _is_clear(e.value, tmp_path / name)
    assert '{"model": state_dict}' in str(pytest.raises(Sam2CheckpointError, read_sam2_checkpoint,
                                                        tmp_path / "list.pt").value)
    with pytest.raises(Sam2CheckpointError) as e:
        load_sam2_model(MODEL, tmp_path / "foreign.pt", 512)
    msg = _is_clear(e.value, tmp_path / "foreign.pt")
    assert "keys missing" in msg and "1 unexpected keys, e.g. 'w'" in msg
    tiny = sam2_weights_folder / OFFICIAL  # a tiny checkpoint given for small
    with pytest.raises(Sam2CheckpointError) as e:
        load_sam2_model("sam2.1_hiera_small", tiny, 512)
    msg = _is_clear(e.value, tiny)
    assert "does not fit sam2.1_hiera_small" in msg and "another SAM2 model" in msg


def test_a_valid_checkpoint_loads_exactly(sam2_weights_folder):
    path = sam2_weights_folder / OFFICIAL
    net, got = load_sam2_model(MODEL, path, 512)
    sd = read_sam2_checkpoint(path)
    assert got == path and set(sd) == set(net.state_dict())
    k = next(k for k in sd if k.startswith("image_encoder.") and sd[k].ndim > 1)
    assert torch.equal(net.state_dict()[k], sd[k]) and not net.training


def test_command_line_reports_one_line(tmp_path, env, capsys):
    from semlab import io
    from semlab.cli import main
    from semlab.data.simulate import simulate

    folder, path, marker = _evil_folder(tmp_path, "zip")
    src = tmp_path / "raw"
    src.mkdir()
    io.write_image(src / "a.png", simulate("ic-metal", 96, 0).image)
    env(tmp_path / "empty-weights")
    capsys.readouterr()
    assert main(["segment", str(src), "--backend", "sam2", "--checkpoint", str(path), "--image-size", "512",
                 "--out", str(tmp_path / "seg"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("semlab segment: error: ")
    assert f"{path} is not a valid SAM2 checkpoint" in err

    # contours: an explicit --checkpoint that cannot be used is an error, in one line
    assert main(["contours", "predict", str(src), "--out", str(tmp_path / "c1"), "--checkpoint", str(path),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{path} is not a valid SAM2 checkpoint" in err
    # ... a bad file found by the weights search: the fallback, saying why in one line
    env(folder)
    assert main(["contours", "predict", str(src), "--out", str(tmp_path / "c2")]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("SAM2 not used:"))
    assert f"{path} is not a valid SAM2 checkpoint" in line
    assert (tmp_path / "c2" / "a.csv").is_file()
    assert not marker.exists()


def test_contours_experiment_says_unavailable(tmp_path, env):
    from semlab.contours.experiment import experiment_config, run_experiment

    folder, path, marker = _evil_folder(tmp_path, "zip")
    env(folder)
    cfg = experiment_config("smoke", ood_variants=("blur",), ood_n=2, n_boot=50,
                            methods=("classical", "sam2_zero_shot", "hybrid_zero_shot"))
    res = run_experiment(cfg, tmp_path / "exp", progress=False)
    assert not marker.exists()
    assert not res.sam2_available
    assert res.sam2_reason.startswith("SAM2 weights unavailable: ") and f"{path} is not a valid" in res.sam2_reason
    assert res.unavailable("sam2_zero_shot") == res.sam2_reason and res.table()["sam2_zero_shot"] is None
    status = {r["method"]: r["status"] for r in res.long_table() if r["test_set"] == "cv"}
    assert status["sam2_zero_shot"] == f"unavailable: {res.sam2_reason}" and status["classical"] == "ok"
    md = res.markdown()
    from semlab.textfmt import md_escape  # reasons in Markdown are escaped (issue 15 item 3)

    assert "unavailable (a)" in md and md_escape(res.sam2_reason) in md
    hyb = [r for r in res.rows if r["method"] == "hybrid_zero_shot"]
    assert hyb and all(r["fallback_rate"] == 1.0 for r in hyb)
    assert np.isfinite(res.table()["classical"]["epe_mean_abs"]["mean"])
