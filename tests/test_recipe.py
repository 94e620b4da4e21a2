"""A model's published recipe fills the [train] keys a config leaves unset; a key given wins."""
import dataclasses
import os
import pickle
import subprocess
import sys
import tomllib

import pytest

from pgti.config import Config, TrainConfig, config_from_dict, config_hash, load_config, to_toml
from pgti.errors import UserError
from pgti.models.registry import get_spec, model_names
from pgti.train.metrics import LOSSES

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def expected(name: str) -> dict:
    """TrainingDefaults -> config values, by the documented mapping (not by pgti.recipe's code)."""
    t = get_spec(name).training
    return {
        "train.optimizer": t.optimizer, "train.lr": t.learning_rate, "train.eps": t.adam_eps,
        "train.weight_decay": t.weight_decay, "train.milestones": list(t.lr_milestones),
        "train.gamma": t.lr_decay, "train.grad_clip": t.grad_clip_norm or 0.0, "train.batch_size": t.batch_size,
        "train.epochs": t.epochs, "train.patience": t.early_stop_patience or 0, "train.loss": t.loss,
        "data.input_steps": t.input_steps, "data.output_steps": t.output_steps,
    }


def value(cfg, key):
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", model_names())
def test_model_name_alone_resolves_to_its_recipe(name, tmp_path):
    cfg = load_config(write(tmp_path, f'[model]\nname = "{name}"\n'))
    want = expected(name)
    assert {k: value(cfg, k) for k in want} == want
    assert cfg.train.schedule == "multistep"  # not part of a recipe
    assert cfg.recipe.model == name and set(cfg.recipe.values) == set(want)
    assert cfg.recipe.source == get_spec(name).training.source


def test_graph_wavenet_is_not_dcrnn():
    cfg = load_config(None, ["model.name=gwnet"])
    t = cfg.train
    assert (t.lr, t.eps, t.weight_decay, t.milestones, t.grad_clip, t.loss) == (1e-3, 1e-8, 1e-4, [], 5.0, "masked_mae")
    a3t = load_config(None, ["model.name=a3tgcn"]).train
    assert (a3t.loss, a3t.grad_clip, a3t.patience) == ("masked_mse", 0.0, 0)


def test_every_recipe_loss_is_a_config_choice_with_a_function():
    choices = {f.name: f for f in dataclasses.fields(TrainConfig)}["loss"].metadata["choices"]
    assert set(choices) == set(LOSSES)
    assert {get_spec(n).training.loss for n in model_names()} <= set(choices)


def test_a_key_given_wins_even_at_the_generic_default(tmp_path):
    # lr 0.01 and grad_clip 5.0 are TrainConfig's own defaults: given, they still win over gwnet's
    path = write(tmp_path, '[model]\nname = "gwnet"\n[train]\nlr = 0.01\nweight_decay = 0.0\nepochs = 3\n')
    cfg = load_config(path)
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.epochs) == (0.01, 0.0, 3)
    assert cfg.train.grad_clip == 5.0 and cfg.train.eps == 1e-8  # the rest: the recipe's
    assert not {"train.lr", "train.weight_decay", "train.epochs"} & set(cfg.recipe.values)


def test_set_wins_and_model_name_from_set_picks_the_recipe(tmp_path):
    path = write(tmp_path, '[model]\nname = "dcrnn"\n[train]\nlr = 0.5\n')
    cfg = load_config(path, ["model.name=dcrnn-pgt", "train.patience=7", "train.lr=0.2", "data.input_steps=6",
                             "data.output_steps=6"])
    assert (cfg.model.name, cfg.train.patience, cfg.train.lr) == ("dcrnn-pgt", 7, 0.2)
    assert (cfg.data.input_steps, cfg.data.output_steps) == (6, 6)
    assert cfg.train.eps == 1e-8 and cfg.train.milestones == []  # dcrnn-pgt's, not dcrnn's
    assert "train.patience" not in cfg.recipe.values and "train.eps" in cfg.recipe.values


def test_a_bad_recipe_value_is_named(monkeypatch):
    from pgti import recipe

    real = recipe.published_values

    def broken(model):
        values, source = real(model)
        return {**values, "train.loss": "mse"}, source

    monkeypatch.setattr(recipe, "published_values", broken)
    with pytest.raises(UserError, match="gwnet's recipe: train.loss: 'mse' is not one of"):
        load_config(None, ["model.name=gwnet"])


@pytest.mark.parametrize("name", model_names())
def test_saved_config_marks_the_recipe_and_loads_back_identically(name):
    cfg = load_config(None, [f"model.name={name}", "train.epochs=2"])
    text = to_toml(cfg)
    source = get_spec(name).training.source
    assert f"from {source}." in text
    lines = {line.split(" = ")[0]: line for line in text.splitlines() if " = " in line}
    assert f"# from {name}'s recipe; " in lines["lr"] and f"# from {name}'s recipe; " in lines["loss"]
    assert "recipe" not in lines["epochs"] and "recipe" not in lines["seed"]
    again = config_from_dict(tomllib.loads(text))
    assert again == cfg and config_hash(again) == config_hash(cfg)
    assert again.recipe.values == {}  # every key is explicit now: a later recipe change leaves it alone
    assert "recipe" not in to_toml(again)
    assert pickle.loads(pickle.dumps(cfg)).recipe == cfg.recipe  # rank 0 broadcasts the loaded config


def test_config_object_default_has_no_recipe_marks():
    assert "recipe" not in to_toml(Config())


def test_dry_run_says_which_values_came_from_graph_wavenets_recipe(make_dataset, tmp_path):
    data = make_dataset(T=400, N=6, C=1)
    path = write(tmp_path, f'[data]\npath = "{data}"\n[model]\nname = "gwnet"\n[train]\nbatch_size = 8\n')
    done = subprocess.run([sys.executable, "-m", "pgti.cli", "train", "--config", str(path), "--dry-run"],
                          capture_output=True, text=True, timeout=180, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "lr=0.001" in out and "weight_decay=0.0001" in out
    (line,) = [line for line in out.splitlines() if line.startswith("recipe")]
    assert "gwnet's published recipe" in line and "train.lr=0.001" in line and "train.weight_decay=0.0001" in line
    assert "train.batch_size" not in line  # given by the file
    assert get_spec("gwnet").training.source in out and "Graph WaveNet" in out
