"""Config: TOML + --set, validated up front with one clear message per mistake."""
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
    assert "unknown key train.lrr (did you mean 'lr'?)" in _error(["train.lrr=0.1"])
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


def test_durations():
    assert parse_duration("01:30:00") == 5400 and parse_duration("90") == 90 and parse_duration("1-00:00:10") == 86410
    with pytest.raises(UserError):
        parse_duration("soon")


def test_model_params_are_checked_against_the_model():
    assert "unknown key model.params.hiden_size for model 'dcrnn' (did you mean 'hidden_size'?)" in \
        _error(["model.params.hiden_size=8"])
    assert load_config(None, ["model.params.hidden_size=8"]).model.params == {"hidden_size": 8}
