"""A model's published training recipe, for the config keys a run leaves unset.

Every model carries the optimizer, schedule and batch settings it was published with (its
`TRAINING_DEFAULTS`, a `pgti.models.defaults.TrainingDefaults`, read through
`get_spec(name).training`). `config_from_dict` calls `apply_recipe`: each key below that the
file and `--set` do not give takes the chosen model's value; a key given wins, whatever its
value (also one equal to TrainConfig's generic default). The keys filled are kept on
`cfg.recipe`, so `to_toml` and `pgti train --dry-run` can say which values came from where.

    TrainingDefaults       config key          TrainingDefaults     config key
    optimizer           -> train.optimizer     grad_clip_norm    -> train.grad_clip (None: 0 = off)
    learning_rate       -> train.lr            batch_size        -> train.batch_size
    adam_eps            -> train.eps           epochs            -> train.epochs
    weight_decay        -> train.weight_decay  early_stop_patience -> train.patience (None: 0 = off)
    lr_milestones       -> train.milestones    loss              -> train.loss
    lr_decay            -> train.gamma         input_steps, output_steps -> data.input_steps, .output_steps

`train.schedule` is no recipe key: its default "multistep" with a recipe's empty milestones
is a constant rate. The window lengths are applied too: they are the task the published
numbers are for (12 -> 12 in every recipe today, the data section's own default). Reading
a recipe imports the model's module (torch), as config loading already does to check
model.params; importing this module (and pgti.config) does not.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Recipe:
    """The keys (`section.key` -> value) model `model`'s recipe filled, and where it comes from."""

    model: str
    source: str
    values: dict = field(default_factory=dict)

    def header(self) -> list[str]:
        """Comment lines for a written config: what the 'from X's recipe' marks mean."""
        if not self.values:
            return []
        source = " ".join(self.source.split())  # one comment line, whatever the string holds
        return [f"# Keys marked 'from {self.model}'s recipe' were not given: they are the values {self.model} "
                "was published with,", f"# from {source}."]

    def mark(self, key: str) -> str:
        """The comment prefix for `key` (`section.key`): '' unless the recipe filled it."""
        return f"from {self.model}'s recipe; " if key in self.values else ""

    def describe(self) -> str:
        """Two lines for the dry run: the values the recipe filled, and its source."""
        if not self.values:
            return f"recipe      {self.model}'s recipe not used: the config gives every key it sets"
        values = ", ".join(f"{k}={v}" for k, v in self.values.items())
        return (f"recipe      from {self.model}'s published recipe (keys not given): {values}\n"
                f"            ({self.source})")


def published_values(model: str) -> tuple[dict, str]:
    """`({section.key: value}, source)`: every config key model `model`'s recipe sets, as
    config values, and the recipe's source. Reads the model's module (see the registry)."""
    from pgti.models.registry import get_spec

    t = get_spec(model).training
    values = {
        "train.optimizer": t.optimizer,
        "train.lr": float(t.learning_rate),
        "train.eps": float(t.adam_eps),
        "train.weight_decay": float(t.weight_decay),
        "train.milestones": [int(m) for m in t.lr_milestones],
        "train.gamma": float(t.lr_decay),
        "train.grad_clip": 0.0 if t.grad_clip_norm is None else float(t.grad_clip_norm),
        "train.batch_size": int(t.batch_size),
        "train.epochs": int(t.epochs),
        "train.patience": 0 if t.early_stop_patience is None else int(t.early_stop_patience),
        "train.loss": t.loss,
        "data.input_steps": int(t.input_steps),
        "data.output_steps": int(t.output_steps),
    }
    return values, t.source


def apply_recipe(cfg, given: set[str], coerce) -> Recipe:
    """Fill each recipe key of `cfg` not in `given` (the `section.key`s the file and --set
    give) with `cfg.model.name`'s value, checked by `coerce(where, section, key, value)` like
    a value from a file; returns what was filled."""
    values, source = published_values(cfg.model.name)
    filled = {}
    for key, value in values.items():
        if key in given:
            continue
        section, name = key.split(".")
        setattr(getattr(cfg, section), name, coerce(f"{cfg.model.name}'s recipe: {key}", section, name, value))
        filled[key] = getattr(getattr(cfg, section), name)
    return Recipe(cfg.model.name, source, filled)
