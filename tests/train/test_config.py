"""Config: TOML + --set, validated up front with one clear message per mistake."""
import dataclasses
import hashlib
import json
import tomllib

import pytest

from pgti.config import Config, config_from_dict, config_hash, load_config, parse_duration, to_toml
from pgti.errors import UserError


def _error(overrides, path=None):
    with pytest.raises(UserError) as err:
        load_config(path, overrides)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_unknown_key_suggests_the_right_one():
    assert _error(["train.lrr=0.1"]) == "--set train.lrr: unknown key (did you mean 'lr'?)"
    assert "unknown section [trian] (did you mean 'train'?)" in _error(["trian.lr=0.1"])


def test_wrong_type_names_key_and_expected_type():
    assert "train.batch_size: expected an integer, got 'big'" in _error(["train.batch_size=big"])
    assert "data.time_of_day: expected true or false" in _error(["data.time_of_day=1"])


def test_out_of_range_and_bad_choice_name_allowed_values():
    assert "train.batch_size: 0 is below the minimum 1" in _error(["train.batch_size=0"])
    msg = _error(["train.schedule=cosin"])
    assert "'multistep', 'cosine', 'constant'" in msg and "did you mean 'cosine'" in msg
    assert "data.ratios" in _error(["data.ratios=[0.5, 0.6, 0.1]"])
    assert "train.shuffle = 'local'" in _error(["data.placement=partitioned"])


def test_file_errors(tmp_path):
    assert "no such config file" in _error([], tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1")
    assert "not valid TOML" in _error([], bad)


def test_overrides_parse_as_toml_and_round_trip(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[train]\nlr = 0.5\n[model]\nname = "dcrnn-pgt"\n')
    cfg = load_config(f, ["train.lr=1e-3", "data.ratios=[0.6, 0.2, 0.2]", "data.path=some/file.h5",
                          "train.time_limit=01:00:00"])
    assert cfg.train.lr == 1e-3 and cfg.data.ratios == [0.6, 0.2, 0.2] and cfg.data.path == "some/file.h5"
    assert cfg.model.name == "dcrnn-pgt"
    again = config_from_dict(tomllib.loads(to_toml(cfg)))
    assert again == cfg


def test_hash_ignores_resume_safe_fields_only():
    a, b = Config(), Config()
    b.train.epochs, b.data.path, b.checkpoint.keep_last = 7, "elsewhere.h5", 9
    assert config_hash(a) == config_hash(b)
    b.train.lr = 0.123
    assert config_hash(a) != config_hash(b)


def test_a_key_added_later_is_hashed_only_off_its_default():
    """train.loss came after checkpoints existed: at its default it leaves the hash alone."""
    a = Config()
    fields = [f for f in dataclasses.fields(a.train) if f.name != "loss"]
    ident = {s: {f.name: getattr(getattr(a, s), f.name) for f in dataclasses.fields(getattr(a, s))
                 if not f.metadata["resume_safe"]} for s in ("data", "model", "dist", "checkpoint", "log")}
    ident["train"] = {f.name: getattr(a.train, f.name) for f in fields if not f.metadata["resume_safe"]}
    before = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]  # the old formula
    assert config_hash(a) == before
    a.train.loss = "masked_mse"
    assert config_hash(a) != before


def test_model_name_choices_are_the_registry_names():
    from pgti.models.registry import model_names

    assert "'dcrnn', 'dcrnn-pgt', 'a3tgcn', 'gwnet'" in _error(["model.name=stgcn"])
    assert {f.name: f for f in dataclasses.fields(Config().model)}["name"].metadata["choices"] == model_names()


def test_durations():
    assert parse_duration("01:30:00") == 5400 and parse_duration("90") == 90 and parse_duration("1-00:00:10") == 86410
    with pytest.raises(UserError):
        parse_duration("soon")


def test_model_params_are_checked_against_the_model():
    assert _error(["model.params.hiden_size=8"]) == \
        "--set model.params.hiden_size: unknown key for model 'dcrnn' (did you mean 'hidden_size'?)"
    assert load_config(None, ["model.params.hidden_size=8"]).model.params == {"hidden_size": 8}


@pytest.mark.parametrize("override, message", [
    ("model.params.hidden_size=abc", "--set model.params.hidden_size: expected an integer, got 'abc'"),
    ("model.params.hidden_size=8.5", "expected an integer, got 8.5"),
    ("model.params.hidden_size=0", "model.params.hidden_size: 0 is below the minimum 1"),
    ("model.params.num_layers=-3", "model.params.num_layers: -3 is below the minimum 1"),
    ("model.params.cl_decay_steps=-1", "cl_decay_steps: -1 is below the minimum 1"),
    ("model.params.max_diffusion_step=-1", "max_diffusion_step: -1 is below the minimum 0"),
    ("model.params.use_curriculum_learning=1", "use_curriculum_learning: expected true or false, got 1"),
])
def test_model_param_values_are_checked_before_any_work(override, message):
    """(they used to reach the model's constructor: TypeError / ZeroDivisionError tracebacks)"""
    assert message in _error(["model.name=dcrnn", override])


def test_model_param_fractions_and_zero_allowed():
    assert "model.params.dropout: 1.0 is outside [0, 1)" in _error(["model.name=gwnet", "model.params.dropout=1.0"])
    assert load_config(None, ["model.name=dcrnn", "model.params.max_diffusion_step=0"]).model.params == \
        {"max_diffusion_step": 0}
    assert load_config(None, ["model.name=dcrnn-pgt", "model.params.hidden_channels=0"]).model.params == \
        {"hidden_channels": 0}


def test_numbers_must_be_finite():
    assert "--set train.lr: nan is not a finite number" in _error(["train.lr=nan"])
    assert "--set train.lr: inf is not a finite number" in _error(["train.lr=inf"])


def test_mistakes_in_set_name_set_and_file_mistakes_name_the_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[train]\nlr = 0.1\nbatchsize = 4\n")
    assert _error(["train.learning_rate=0.1"], None).startswith("--set train.learning_rate: unknown key")
    assert _error([], path) == f"{path}: train.batchsize: unknown key (did you mean 'batch_size'?)"
    path.write_text("[train]\nlr = 0.1\n")
    assert _error(["train.lr.x=1"], path) == \
        "--set train.lr.x: train.lr is 0.1, not a table of keys; set train.lr itself, or fix the key"
    assert "model.params is 5, not a table" in _error(["model.params=5", "model.params.hidden_size=3"])


def test_key_above_the_first_section_and_non_utf8_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("epochs = 3\n[train]\nlr = 0.1\n")
    assert _error([], path) == f"{path}: key 'epochs' is outside any [section]; put it under [train]"
    path.write_bytes(b"\xff\xfe garbage")
    assert _error([], path).startswith(f"{path}: not a UTF-8 text file")


def test_a_key_in_the_wrong_section_names_its_section():
    assert _error(["dist.shuffle=local"]) == "--set dist.shuffle: unknown key (it is train.shuffle, in [train])"


def test_cross_field_mistakes_from_set_name_set(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[train]\nlr = 0.1\n")
    assert _error(["data.ratios=[0.5, 0.6, 0.1]"], path).startswith("--set data.ratios: ")
    assert _error(["data.placement=partitioned"], path).startswith("--set data.placement: ")
    path.write_text("[data]\nratios = [0.5, 0.6, 0.1]\n")
    assert _error([], path).startswith(f"{path}: data.ratios: ")


def test_nesting_depth_key_length_and_a_directory_are_one_line(tmp_path):
    """Each used to be a RecursionError traceback, a 10 MB echo, or "no such config file"."""
    deep = tmp_path / "deep.toml"
    deep.write_text("[model]\nparams = " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested 5000 levels deep; a pgti config needs at most 8" in _error(None, deep)
    tables = tmp_path / "tables.toml"
    tables.write_text("[model.params.a.b.c.d.e.f.g.h]\nx = 1\n")
    assert "model.params.a.b.c.d.e.f.g is nested 9 levels deep" in _error(None, tables)
    assert "nested 3000 levels deep" in _error(["model.params.x=" + "[" * 3000 + "]" * 3000])
    long = tmp_path / "long.toml"
    long.write_text("[train]\n" + "k" * 10_000_000 + " = 1\n")
    message = _error(None, long)
    assert "(10,000,000 characters)' is longer than 100 characters" in message and len(message) < 300
    assert len(_error(["train." + "k" * 200_000 + "=1"])) < 300
    assert _error(None, tmp_path) == f"{tmp_path}: is a directory; give a TOML config file (see jobs/configs/)"
    assert _error(["train.lr=1e38"]) == "--set train.lr: 1e+38 is above the maximum 100.0"  # Adam crashed on it
