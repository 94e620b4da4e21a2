"""Training hyper-parameters a model was published with: its recipe.

Architecture defaults live in each model's constructor signature; these are the optimizer,
schedule and batch settings that go with them. Epoch counts are in epochs of the full
training split; `lr_milestones` are epochs at which the learning rate is multiplied by
`lr_decay` (torch's MultiStepLR).

Who reads them (through `get_spec(name).training`): config loading (`pgti.recipe`), which
gives every [train] key a config leaves unset, and data.input_steps / output_steps, the
chosen model's value, so `pgti train` trains with them; `pgti info model`, which prints
them; and `pgti bench epoch`, which takes its Adam lr, eps and clipping from them.
`loss` is a `train.loss` choice; both losses skip targets equal to the dataset's
missing_value (0.0 in PeMS), as DCRNN's masked MAE does.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TrainingDefaults:
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    lr_milestones: tuple[int, ...] = ()
    lr_decay: float = 0.1
    grad_clip_norm: float | None = None  # max global L2 norm; None = no clipping
    batch_size: int = 64
    epochs: int = 100
    early_stop_patience: int | None = None  # epochs without validation improvement
    input_steps: int = 12
    output_steps: int = 12
    loss: str = "masked_mae"  # "masked_mae" or "masked_mse" (missing readings are not scored)
    source: str = ""  # where these values come from

    def as_dict(self) -> dict:
        return asdict(self)
