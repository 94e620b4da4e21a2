"""Bounds on what a config may look like, checked before anything else reads it: nesting depth
and key length (a deeply nested TOML made tomllib recurse until Python's RecursionError; a
10 MB key name was echoed in full). One UserError each, naming the source."""
from __future__ import annotations

import tomllib

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
