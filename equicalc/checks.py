"""Checked dataclasses: one value checker and one "did you mean" error for every config and spec.

Fields declare their rules in their metadata (``option(default, doc, choices=...,
minimum=..., maximum=...)``); ``check_value`` coerces and checks a value against
a field's type and rules, ``unknown_key`` names the closest allowed key.
"""
from __future__ import annotations

import difflib
import math
import typing
from dataclasses import MISSING, field
from typing import Union

__all__ = ["option", "check_value", "unknown_key", "type_name", "checked_fields"]


def option(default, doc: str, choices=None, minimum=None, maximum=None, exclusive: bool = False,
           exclusive_max: bool = False):
    """A dataclass field with its documentation and the rules ``check_value`` applies.

    ``minimum``/``maximum`` bound numbers, and the values of a mapping (``exclusive``/``exclusive_max``: the
    bound itself is refused).
    """
    meta = {"doc": doc, "choices": choices, "minimum": minimum, "maximum": maximum, "exclusive": exclusive,
            "exclusive_max": exclusive_max}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def unknown_key(key: str, allowed, where: str = "", what: str = "config") -> ValueError:
    """``ValueError`` for an unknown key, with the closest allowed one."""
    hint = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1)
    extra = f"; did you mean {hint[0]!r}?" if hint else ""
    return ValueError(f"{what}: unknown key '{where}{key}'{extra} (allowed: {', '.join(sorted(map(str, allowed)))})")


def type_name(tp) -> str:
    """A readable name of a type annotation (``int or null``...)."""
    if typing.get_origin(tp) is Union:
        return " or ".join("null" if a is type(None) else type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is dict:
        return f"mapping to {type_name(typing.get_args(tp)[1])}"
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _check_type(value, tp, name: str, what: str, bounds: dict):
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{what}: '{name}' must be true or false, got {value!r}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{what}: '{name}' must be an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{what}: '{name}' must be a number, got {value!r}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{what}: '{name}' must be a string, got {value!r}")
    elif tp is list or typing.get_origin(tp) is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{what}: '{name}' must be a list, got {value!r}")
        value = list(value)
    elif typing.get_origin(tp) is dict:  # Dict[str, float]: names to finite numbers, each within the bounds
        if not isinstance(value, dict):
            raise ValueError(f"{what}: '{name}' must be a mapping, got {value!r}")
        value = {str(k): check_value(v, typing.get_args(tp)[1], f"{name}.{k}", bounds, what) for k, v in value.items()}
    return value


def check_value(value, tp, name: str, meta: dict, what: str = "config"):
    """``value`` coerced to the annotation ``tp`` and checked against ``meta``'s rules, or ``ValueError``."""
    if typing.get_origin(tp) is Union:
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ValueError(f"{what}: '{name}' must not be null")
        options = [a for a in args if a is not type(None)]
        errors = []
        for a in options:
            try:
                return check_value(value, a, name, meta, what)
            except ValueError as exc:
                errors.append(exc)
        if len(options) == 1:
            raise errors[0]
        raise ValueError(f"{what}: '{name}' must be {' or '.join(type_name(a) for a in options)}, got {value!r}")
    bounds = {k: v for k, v in meta.items() if k in ("minimum", "maximum", "exclusive", "exclusive_max")}
    value = _check_type(value, tp, name, what, bounds)
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ValueError(f"{what}: '{name}' must be one of {', '.join(map(str, choices))}; got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{what}: '{name}' must be a finite number, got {value!r}")
        low, high = meta.get("minimum"), meta.get("maximum")
        if low is not None and (value < low or (meta.get("exclusive") and value == low)):
            raise ValueError(f"{what}: '{name}' must be {'>' if meta.get('exclusive') else '>='} {low}, got {value!r}")
        if high is not None and (value > high or (meta.get("exclusive_max") and value == high)):
            raise ValueError(f"{what}: '{name}' must be {'<' if meta.get('exclusive_max') else '<='} {high}, "
                             f"got {value!r}")
    return value


def checked_fields(cls, raw: dict, where: str = "", what: str = "config", skip=()) -> dict:
    """The fields of dataclass ``cls`` given in ``raw``, each checked; unknown keys are errors.

    Missing fields without a default are errors too. ``skip`` names fields that are not read from ``raw``.
    """
    from dataclasses import fields

    if not isinstance(raw, dict):
        raise ValueError(f"{what}: '{where.rstrip('.')}' must be a mapping of keys to values, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if f.name not in skip}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise unknown_key(key, known, where, what)
        values[key] = check_value(value, hints[key], where + key, dict(known[key].metadata), what)
    for name, f in known.items():
        if f.default is MISSING and f.default_factory is MISSING and name not in values:
            raise ValueError(f"{what}: '{where}{name}' is required ({f.metadata.get('doc', '')})")
    return values
