"""Reading config text, before pgti.config types it: bounds on what a config may look like
(nesting depth and key length: a deeply nested TOML made tomllib recurse until Python's
RecursionError, a 10 MB key name was echoed in full), `--set` overrides, and the coercion of
one value to its field's type and limits. One UserError each, naming the source or the key."""
from __future__ import annotations

import datetime
import difflib
import math
import tomllib
import typing

from pgti.errors import UserError

MAX_DEPTH = 8  # [section] -> key -> model.params -> ...: pgti's own configs use 3
MAX_KEY = 100  # characters
_SHOWN = 60


def short(text: str) -> str:
    """A key or value as an error message shows it: at most _SHOWN characters."""
    text = str(text)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text):,} characters)"


def parse_toml(text: str, source: str) -> dict:
    """tomllib.loads(text), with a nesting bound first (tomllib recurses per level)."""
    depth = deepest = 0
    for ch in text:  # brackets of arrays and inline tables (also inside strings: a generous bound)
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    if deepest > 4 * MAX_DEPTH:
        raise UserError(f"{source}: nested {deepest} levels deep; a pgti config needs at most {MAX_DEPTH}")
    try:
        raw = tomllib.loads(text)
    except RecursionError:
        raise UserError(f"{source}: nested too deeply; a pgti config needs at most {MAX_DEPTH} levels") from None
    check_shape(raw, source)
    return raw


def check_shape(raw, source: str) -> None:
    """Every key at most MAX_KEY characters, tables and lists at most MAX_DEPTH deep."""
    stack = [(raw, 0, "")]
    while stack:
        value, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            raise UserError(f"{source}: {short(path)} is nested {depth} levels deep; a pgti config needs at most "
                            f"{MAX_DEPTH}")
        if isinstance(value, dict):
            for key, item in value.items():
                if len(key) > MAX_KEY:
                    raise UserError(f"{source}: key {short(key)!r} is longer than {MAX_KEY} characters; no pgti key "
                                    "is (see jobs/configs/)")
                stack.append((item, depth + 1, f"{path}.{key}" if path else key))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(value))


def suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(sorted(options))})"


def coerce_value(where: str, value, annotation, meta: dict):
    """Check/convert one value against its annotation and metadata; raise UserError naming `where`."""
    origin = typing.get_origin(annotation)
    if annotation is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {value!r}")
    elif annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {value!r}")
    elif annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise UserError(f"{where}: {value!r} is not a finite number")
    elif annotation is str:
        if isinstance(value, datetime.time):  # TOML reads 01:30:00 as a time of day
            value = value.isoformat()
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and meta.get("numbers_ok"):
            value = str(value)
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {value!r}")
    elif origin is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise UserError(f"{where}: expected a list like [{'0.7, 0.1, 0.2' if item is float else '...'}], got {value!r}")
        value = [coerce_value(f"{where}[{i}]", v, item, {}) for i, v in enumerate(value)]
    elif annotation is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a table, got {value!r}")
    choices, lo, hi = meta.get("choices"), meta.get("min"), meta.get("max")
    if choices and value not in choices:
        raise UserError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}"
                        + (suggest(value, choices) if isinstance(value, str) else ""))
    if lo is not None and value < lo:
        raise UserError(f"{where}: {value!r} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise UserError(f"{where}: {value!r} is above the maximum {hi}")
    return value


def parse_override(text: str) -> tuple[str, str, object]:
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise UserError(f"--set {short(text)!r}: expected section.key=value, e.g. --set train.lr=0.001")
    key, raw = text.split("=", 1)
    section, name = key.strip().split(".", 1)
    if len(key) > MAX_KEY:
        raise UserError(f"--set {short(key)}: the key is longer than {MAX_KEY} characters; no pgti key is")
    try:
        value = parse_toml(f"v = {raw}", f"--set {key.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: a string
    return section, name, value


def set_key(raw: dict, section: str, name: str, value) -> None:
    parts = [section] + name.split(".")  # model.params.hidden=32
    target = raw
    for depth, p in enumerate(parts[:-1], start=1):
        target = target.setdefault(p, {})
        if not isinstance(target, dict):
            table = ".".join(parts[:depth])
            raise UserError(f"--set {section}.{name}: {table} is {target!r}, not a table of keys; "
                            f"set {table} itself, or fix the key")
    target[parts[-1]] = value
