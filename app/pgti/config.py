"""Typed run configuration: TOML sections -> dataclasses, validated up front.

    [data] [model] [train] [dist] [checkpoint] [log]

`load_config(path, overrides)` reads a TOML file, applies `--set section.key=value` overrides
(values parsed as TOML, so `--set train.lr=1e-3`, `--set data.ratios=[0.6,0.2,0.2]`; a bare
word is a string), and validates everything before any work starts: an unknown section or key
is an error with a "did you mean" suggestion; a value of the wrong type or out of range names
the key and what is allowed. `to_toml(cfg)` writes the resolved config (saved in the run
directory), and `config_hash(cfg)` fingerprints the fields that change what is trained, so a
checkpoint is only resumed under the config that made it.

A [train] key (and data.input_steps / output_steps) that neither the file nor --set gives
takes the chosen model's published value (`pgti.recipe`; `cfg.recipe` says which did). The
defaults below are generic (DCRNN's recipe without early stopping): `Config()` itself.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from pgti.config_parse import check_shape, coerce_value, parse_override, parse_toml, set_key, suggest
from pgti.errors import UserError
from pgti.models.registry import check_hyperparameter, get_spec, model_names
from pgti.recipe import apply_recipe


def _opt(default, help: str, *, choices=None, min=None, max=None, resume_safe=False, numbers_ok=False,
         hash_at_default=True):
    """A config field: its default, its help text, what is allowed, and whether changing it
    between a checkpoint and its resume is harmless (not part of the config hash).
    `hash_at_default=False`: left out of the hash while at its default (a key added after
    checkpoints existed, so theirs keep their hash)."""
    meta = {"help": help, "choices": choices, "min": min, "max": max, "resume_safe": resume_safe,
            "numbers_ok": numbers_ok, "hash_at_default": hash_at_default}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    path: str = _opt("data/demo.h5", "the pgti HDF5 dataset", resume_safe=True)
    input_steps: int = _opt(12, "steps of history per sample (Tin)", min=1)
    output_steps: int = _opt(12, "steps to forecast (Tout)", min=1)
    stride: int = _opt(1, "distance between consecutive window starts", min=1)
    split: str = _opt("dcrnn", "dcrnn: DCRNN's chronological split; strict: gaps so no target is "
                      "another split's input", choices=["dcrnn", "strict"])
    ratios: list[float] = _opt([0.7, 0.1, 0.2], "train/val/test fractions of window starts")
    scaler: str = _opt("dcrnn", "dcrnn: DCRNN's StandardScaler over training input windows; "
                       "range: mean/std over the training time range", choices=["dcrnn", "range"])
    scaler_include_missing: bool = _opt(True, "count missing readings (0.0) in the scaler, as DCRNN does")
    input_channels: list[str] = _opt([], "input channels by name ([] = all)")
    target_channels: list[str] = _opt([], "forecast channels by name ([] = the first channel)")
    time_of_day: bool = _opt(True, "add time of day (fraction of a day) as an input channel")
    day_of_week: bool = _opt(False, "add day of week as an input channel")
    storage_dtype: str = _opt("float32", "dtype of the raw array in memory (float16/bfloat16 halve it)",
                              choices=["float32", "float16", "bfloat16"])
    load: str = _opt("bcast", "bcast: rank 0 reads, broadcasts to node leaders; leaders: every node "
                     "leader reads its own part", choices=["bcast", "leaders"], resume_safe=True)
    placement: str = _opt("replicated", "replicated: every node holds the whole series; partitioned: "
                          "only its ranks' time span (needs train.shuffle=local)",
                          choices=["replicated", "partitioned"], resume_safe=True)
    prefetch: bool = _opt(True, "gather the next batch in a background thread (CPU)", resume_safe=True)


@dataclass
class ModelConfig:
    name: str = _opt("dcrnn", "model name", choices=model_names())
    params: dict = _opt({}, "model hyper-parameters overriding the model's defaults (see `pgti info model`)")
    compile: bool = _opt(False, "torch.compile (inductor) the training step's model, compiled before the first "
                         "step; eager on every rank, with one warning, where it cannot compile (CPU figures: "
                         "README, docs/benchmarks.md)",
                         resume_safe=True)


@dataclass
class TrainConfig:
    epochs: int = _opt(100, "epochs to train", min=1, resume_safe=True)
    batch_size: int = _opt(64, "samples per batch per rank", min=1)
    eval_batch_size: int = _opt(0, "batch size for validation/test (0 = batch_size)", min=0, resume_safe=True)
    optimizer: str = _opt("adam", "optimizer", choices=["adam", "adamw"])
    lr: float = _opt(0.01, "learning rate (before world-size scaling)", min=0.0, max=100.0)
    eps: float = _opt(1e-3, "Adam epsilon (DCRNN uses 1e-3)", min=0.0)
    weight_decay: float = _opt(0.0, "weight decay", min=0.0)
    schedule: str = _opt("multistep", "learning-rate schedule", choices=["multistep", "cosine", "constant"])
    milestones: list[int] = _opt([20, 30, 40, 50], "multistep: epochs where lr is multiplied by gamma")
    gamma: float = _opt(0.1, "multistep: decay factor", min=0.0, max=1.0)
    warmup_epochs: float = _opt(0.0, "linear warm-up length in epochs (also for lr scaling)", min=0.0)
    grad_clip: float = _opt(5.0, "clip the global gradient norm (0 = off)", min=0.0)
    loss: str = _opt("masked_mae", "training loss over non-missing targets: masked_mae (DCRNN's) or "
                     "masked_mse", choices=["masked_mae", "masked_mse"], hash_at_default=False)
    bf16: bool = _opt(False, "bfloat16 autocast on GPU")
    patience: int = _opt(0, "early stopping: epochs without val improvement (0 = off)", min=0, resume_safe=True)
    max_steps: int = _opt(0, "stop after this many optimizer steps (0 = no limit)", min=0, resume_safe=True)
    skip_nonfinite: int = _opt(0, "skip up to this many steps with a non-finite loss or gradient norm, with a "
                                  "warning each, before the run stops with exit 1 (0 = stop at the first)",
                               min=0, resume_safe=True)
    seed: int = _opt(0, "seed for init, shuffling and sampling")
    shuffle: str = _opt("global", "global: one permutation of all windows per epoch, split across "
                        "ranks; local: each rank shuffles its own contiguous block (PGT-I); none",
                        choices=["global", "local", "none"])
    drop_last: bool = _opt(True, "drop the incomplete last batch")
    time_limit: str = _opt("", "stop and checkpoint before this much wall time (HH:MM:SS or seconds; "
                           "default: the job's end from Slurm/PBS)", resume_safe=True, numbers_ok=True)
    device: str = _opt("auto", "auto: a GPU per local rank when CUDA is available", choices=["auto", "cpu", "cuda"],
                       resume_safe=True)
    validate_every: int = _opt(1, "validate every N epochs", min=1, resume_safe=True)


@dataclass
class DistConfig:
    engine: str = _opt("horovod", "gradient averaging: horovod (allreduce over MPI/NCCL) or ddp "
                       "(torch.distributed: gloo on CPU, nccl on GPU)", choices=["horovod", "ddp"],
                       resume_safe=True)
    fp16_compression: bool = _opt(False, "horovod: compress gradients to fp16 for the allreduce")
    lr_scaling: str = _opt("none", "scale lr with world size", choices=["none", "linear", "sqrt"])


@dataclass
class CheckpointConfig:
    every_steps: int = _opt(0, "checkpoint every N optimizer steps (0 = off)", min=0, resume_safe=True)
    every_minutes: float = _opt(30.0, "checkpoint every M minutes (0 = off)", min=0.0, resume_safe=True)
    keep_last: int = _opt(3, "step checkpoints to keep (best is kept separately)", min=1, resume_safe=True)


@dataclass
class LogConfig:
    every_steps: int = _opt(50, "a log line every N steps when stdout is not a terminal", min=1, resume_safe=True)
    progress: str = _opt("auto", "auto: a bar on a terminal (under Open MPI: mpirun's output), log lines otherwise",
                         choices=["auto", "bar", "lines", "none"], resume_safe=True)
    plots: bool = _opt(True, "refresh loss / val MAE PNG curves each epoch", resume_safe=True)
    tensorboard: bool = _opt(True, "TensorBoard event files in <run dir>/tensorboard (rank 0)", resume_safe=True)
    verbose: bool = _opt(False, "log from every rank, not only rank 0", resume_safe=True)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    # Not a field (no annotation): the pgti.recipe.Recipe whose values filled keys left unset,
    # set by config_from_dict; never written as a key, hashed or compared.
    recipe = None


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}


# --------------------------------------------------------------------------- parsing


def _section_types(section_cls) -> dict[str, typing.Any]:
    return typing.get_type_hints(section_cls)


def _section_of(key: str) -> str | None:
    """The section that has a key named `key`, if exactly one does."""
    defaults = Config()
    owners = [s for s in SECTIONS if key in {f.name for f in dataclasses.fields(getattr(defaults, s))}]
    return owners[0] if len(owners) == 1 else None


def _where(key: str, source: str, from_set: frozenset[str]) -> str:
    """Who to blame for `key`: `--set key` when it (or a key below it) came from --set, else the file."""
    given = key in from_set or any(k.startswith(key + ".") or key.startswith(k + ".") for k in from_set)
    return f"--set {key}" if given else f"{source}: {key}"


def config_from_dict(raw: dict, source: str = "config", from_set: frozenset[str] = frozenset(),
                     recipe: bool = True) -> Config:
    """`from_set`: the `section.key`s given by `--set` (errors about them name --set, not the file).
    `recipe=False`: a resolved config (a run's config.toml): a key it lacks is newer than the run,
    which trained with the generic default, so the model's recipe must not fill it."""
    def where(key: str) -> str:
        return _where(key, source, from_set)

    cfg = Config()
    for section, values in raw.items():
        if section not in SECTIONS:
            if not isinstance(values, dict):  # `key = value` above the first [section] header
                owner = _section_of(section)
                hint = f" under [{owner}]" if owner else f" under its [section]{suggest(section, SECTIONS)}"
                raise UserError(f"{source}: key {section!r} is outside any [section]; put it{hint}")
            raise UserError(f"{where(section)}: unknown section [{section}]{suggest(section, SECTIONS)}")
        if not isinstance(values, dict):
            raise UserError(f"{where(section)}: [{section}] must be a table of keys")
        obj = getattr(cfg, section)
        types = _section_types(type(obj))
        fields = {f.name: f for f in dataclasses.fields(obj)}
        for key, value in values.items():
            if key not in fields:
                owner = _section_of(key)
                hint = f" (it is {owner}.{key}, in [{owner}])" if owner else suggest(key, fields)
                raise UserError(f"{where(f'{section}.{key}')}: unknown key{hint}")
            setattr(obj, key, coerce_value(where(f"{section}.{key}"), value, types[key], fields[key].metadata))

    def coerce(where: str, section: str, name: str, value):
        obj = getattr(cfg, section)
        meta = {f.name: f.metadata for f in dataclasses.fields(obj)}[name]
        return coerce_value(where, value, _section_types(type(obj))[name], meta)

    if recipe:
        cfg.recipe = apply_recipe(cfg, {f"{s}.{k}" for s, values in raw.items() for k in values}, coerce)
    validate(cfg, source, from_set)
    return cfg


def validate(cfg: Config, source: str = "config", from_set: frozenset[str] = frozenset()) -> None:
    """Checks that involve more than one field, and the model's hyper-parameters."""
    d, t = cfg.data, cfg.train

    def where(key: str) -> str:
        return _where(key, source, from_set)

    if len(d.ratios) != 3 or any(r < 0 for r in d.ratios) or abs(sum(d.ratios) - 1.0) > 1e-6:
        raise UserError(f"{where('data.ratios')}: {d.ratios} must be three non-negative fractions summing to 1, "
                        "e.g. [0.7, 0.1, 0.2]")
    if d.ratios[0] == 0:
        raise UserError(f"{where('data.ratios')}: the training fraction must be > 0")
    if d.placement == "partitioned" and t.shuffle == "global":
        raise UserError(f"{where('data.placement')}: 'partitioned' needs train.shuffle = 'local' or 'none' "
                        "(each rank then keeps its own block of windows, so a node holds only its ranks' "
                        "time span); set both or use 'replicated'")
    if sorted(t.milestones) != t.milestones:
        raise UserError(f"{where('train.milestones')}: {t.milestones} must be increasing")
    if t.time_limit:
        parse_duration(t.time_limit, where("train.time_limit"))

    known = get_spec(cfg.model.name).hyperparameters
    for key, value in cfg.model.params.items():
        name = where(f"model.params.{key}")
        if key not in known:
            raise UserError(f"{name}: unknown key for model '{cfg.model.name}'{suggest(key, known)}")
        problem = check_hyperparameter(key, value, known[key])
        if problem:
            raise UserError(f"{name}: {problem} (model '{cfg.model.name}'; default {known[key]!r})")


def parse_duration(text: str, where: str = "duration") -> float:
    """'HH:MM:SS', 'MM:SS', 'D-HH:MM:SS' or plain seconds -> seconds."""
    text = str(text).strip()
    try:
        days = 0.0
        if "-" in text:
            d, text = text.split("-", 1)
            days = float(d)
        parts = [float(p) for p in text.split(":")]
        if not 1 <= len(parts) <= 3 or any(p < 0 for p in parts):
            raise ValueError
        seconds = 0.0
        for p in parts:
            seconds = seconds * 60 + p
        return days * 86400 + seconds
    except ValueError:
        raise UserError(f"{where}: {text!r} is not a duration; use HH:MM:SS or seconds, e.g. 01:30:00") from None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    raw: dict = {}
    source, text = "--set", ""
    if path is not None:
        path = Path(path)
        source = str(path)
        if path.is_dir():
            raise UserError(f"{path}: is a directory; give a TOML config file (see jobs/configs/)")
        if not path.is_file():
            raise UserError(f"{path}: no such config file; see jobs/configs/ for examples")
        try:
            text = path.read_text(encoding="utf-8")
            raw = parse_toml(text, str(path))
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: not a UTF-8 text file (byte {exc.start}); give a TOML config "
                            "(see jobs/configs/)") from None
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{path}: not valid TOML ({exc})") from None
        except OSError as exc:
            raise UserError(f"{path}: cannot read the config ({exc.strerror})") from None
    from_set = set()
    for item in overrides or []:
        section, name, value = parse_override(item)
        set_key(raw, section, name, value)
        from_set.add(f"{section}.{name}")
    check_shape(raw, "--set" if overrides else source)
    return config_from_dict(raw, source, frozenset(from_set), recipe=not text.startswith(RESOLVED_HEADER))


# --------------------------------------------------------------------------- writing

RESOLVED_HEADER = "# pgti resolved configuration (every key, defaults included)"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def to_toml(cfg: Config) -> str:
    lines = [RESOLVED_HEADER]
    lines += cfg.recipe.header() if cfg.recipe else []
    for section in SECTIONS:
        obj = getattr(cfg, section)
        tables = []
        lines.append(f"\n[{section}]")
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, dict):
                tables.append((f"{section}.{f.name}", value))
            else:
                mark = cfg.recipe.mark(f"{section}.{f.name}") if cfg.recipe else ""
                lines.append(f"{f.name} = {_toml_value(value)}  # {mark}{f.metadata['help']}")
        for name, table in tables:
            lines.append(f"\n[{name}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def config_hash(cfg: Config) -> str:
    """Fingerprint of what is trained (fields marked resume_safe are left out, and those marked
    hash_at_default=False while at their default)."""
    ident = {}
    for section in SECTIONS:
        obj = getattr(cfg, section)
        ident[section] = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
                          if not f.metadata.get("resume_safe")
                          and (f.metadata.get("hash_at_default", True) or getattr(obj, f.name) != f.default)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
