"""semlab.config: one frozen Profile, load_profile the only way in, stages read it."""

import dataclasses

import pytest

from semlab.config import Profile, load_profile, profile_settings


def test_profiles_and_overrides_dotted_nested_and_yaml(tmp_path):
    cpu = load_profile("cpu")
    assert isinstance(cpu, Profile) and cpu.data.size == 128 and cpu.domains == ("sim",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cpu.data.size = 3
    p = load_profile("smoke", {"tables.n_boot": 7, "forensics": {"detector": {"epochs": 2}}, "domain": "both"})
    assert p.tables.n_boot == 7 and p.forensics.detector.epochs == 2 and p.domains == ("sim", "real")
    assert p.data.size == 64  # the rest of smoke is kept
    f = tmp_path / "o.yaml"
    f.write_text("segsem:\n  folds: 3\ntables:\n  curve_ns: [5, 10]\n")
    q = load_profile("cpu", f)
    assert q.segsem.folds == 3 and q.tables.curve_ns == (5, 10)


@pytest.mark.parametrize("overrides, exc, needle", [
    ({"tables.nboot": 1}, KeyError, "valid: tables.n_eval"),
    ({"tables": {"n_boot": "many"}}, TypeError, "tables.n_boot must be int"),
    ({"train.train_batch": True}, TypeError, "must be int"),
    ({"forensics": 3}, TypeError, "is a section"),
    ({"domain": "mars"}, ValueError, "unknown domain"),
])
def test_bad_overrides_are_refused_by_name(overrides, exc, needle):
    with pytest.raises(exc, match=needle):
        load_profile("cpu", overrides)


def test_bad_yaml_and_unknown_profile(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tables: [1,\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_profile("cpu", bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        load_profile("cpu", lst)
    with pytest.raises(KeyError, match="valid: smoke, cpu, full"):
        load_profile("bogus")


def test_stage_settings_come_from_the_profile():
    from semlab.contours.experiment_config import experiment_config
    from semlab.forensics.study_types import study_settings
    from semlab.metrics import tables

    for name in ("smoke", "cpu", "full"):
        prof = load_profile(name)
        assert profile_settings(name)["size"] == prof.data.size
        assert tables.profile_settings(name)["n_boot"] == prof.tables.n_boot
        s = study_settings(name)
        assert s["n_boot"] == prof.forensics.detector.n_boot and s["epochs"] == prof.forensics.detector.epochs
        e = experiment_config(name)
        assert e.folds == prof.segsem.folds and len(e.sweep) == prof.segsem.sweep_points


def test_domain_settings_keep_sim_and_give_real_its_own_budget():
    from semlab.config import domain_settings, real_settings

    for name in ("smoke", "cpu", "full"):
        assert domain_settings(name, "sim") == {**profile_settings(name), "train_steps": None}
        prof = load_profile(name)
        real = domain_settings(name, "real")
        assert (real["train_epochs"], real["train_epochs_decay"], real["train_batch"], real["train_steps"]) == (
            prof.real.train_epochs, prof.real.train_epochs_decay, prof.real.train_batch, prof.real.train_steps)
        assert real["cyclegan_steps"] == prof.real.cyclegan_steps and real["compare_epochs"] == 0
        assert real["size"] == prof.data.size and real_settings(name)["sets"] == prof.real.sets
    assert load_profile("cpu").real.sets == ("cdsem-lines",) and load_profile("full").real.sets == ()
    p = load_profile("cpu", {"real.sets": ["cdsem-contacts"], "real.cyclegan_steps": None})
    assert p.real.sets == ("cdsem-contacts",) and p.real.cyclegan_steps is None
    with pytest.raises(ValueError, match="unknown domain 'both'"):
        domain_settings("cpu", "both")
