"""Configs as code: one frozen dataclass per experiment, overrides type-checked.

Every experiment module in `experiments/configs/` defines `Config` (a subclass
of `TrainConfig`) and `SMOKE` (overrides that make it run in seconds). From
the command line, `--set key=value ...` changes fields; the value is parsed
with the field's type, and an unknown key or a value of the wrong type is a
clear error that lists the valid keys.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Fields every experiment has; experiment configs add their own."""

    task: str = ""
    cell: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    batch_size: int = 64
    steps: int = 1000
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    lr_schedule: str = "cosine"  # "cosine" | "constant"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 200
    eval_batches: int = 4
    checkpoint_every: int = 200
    log_every: int = 20
    method: str = "auto"  # how the cells are unrolled: "auto" or a method's repr, e.g. "Scan(unroll=4)"
    precision: str = "float32"  # "float32" | "bf16": compute in bfloat16, params and optimiser state float32


class ConfigError(ValueError):
    """A bad experiment name, key or value; the message lists what is valid."""


def experiment_names() -> list[str]:
    """The experiments in `experiments/configs/`, by module name."""
    from experiments import configs

    return sorted(m.name for m in pkgutil.iter_modules(configs.__path__) if not m.name.startswith("_"))


def load(name: str) -> types.ModuleType:
    """The config module of experiment `name`."""
    names = experiment_names()
    if name not in names:
        raise ConfigError(f"unknown experiment {name!r}; available: {', '.join(names)}")
    return importlib.import_module(f"experiments.configs.{name}")


def _field_types(config_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def _parse(key: str, text: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    try:
        if kind is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return text
        if origin is tuple:
            (item,) = {a for a in typing.get_args(kind) if a is not Ellipsis}
            return tuple(_parse(key, part, item) for part in text.split(",") if part != "")
    except ValueError:
        pass
    name = getattr(kind, "__name__", str(kind))
    raise ConfigError(f"--set {key}={text}: expected a value of type {name}")


def _check_type(key: str, value: Any, kind: Any) -> Any:
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"config key {key!r}: expected a tuple, got {value!r}")
        (item,) = {a for a in typing.get_args(kind) if a is not Ellipsis}
        return tuple(_check_type(key, v, item) for v in value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float, str, bool) and (type(value) is not kind):
        raise ConfigError(f"config key {key!r}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def override(config: TrainConfig, updates: Mapping[str, Any] | Iterable[str]) -> TrainConfig:
    """A copy of `config` with `updates` applied: a mapping, or `key=value` strings.

    Raises:
      ConfigError: an unknown key (the message lists the valid ones), a
        string without `=`, or a value that does not parse as the field's type.
    """
    types_ = _field_types(type(config))
    if not isinstance(updates, Mapping):
        parsed = {}
        for item in updates:
            if "=" not in item:
                raise ConfigError(f"--set expects key=value, got {item!r}")
            key, text = item.split("=", 1)
            key = key.strip()
            if key not in types_:
                raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(types_))}")
            parsed[key] = _parse(key, text, types_[key])
        updates = parsed
    for key in updates:
        if key not in types_:
            raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(types_))}")
    checked = {k: _check_type(k, v, types_[k]) for k, v in updates.items()}
    return dataclasses.replace(config, **checked)


def resolve(name: str, *, smoke: bool = False, sets: Iterable[str] = ()) -> TrainConfig:
    """The config of experiment `name`, with its smoke overrides and then `sets` applied."""
    module = load(name)
    config = module.Config()
    if smoke:
        config = override(config, module.SMOKE)
    config = override(config, list(sets))
    check(config)
    return config


def check(config: TrainConfig) -> None:
    """Value checks that a type cannot express: a known cell, positive sizes, finite positive rates."""
    import math

    import rnnjax

    if getattr(config, "backbone", False):
        from experiments.backbone import mixer_names

        if config.cell not in mixer_names():
            raise ConfigError(f"cell={config.cell!r} is not a token mixer; choose one of: {', '.join(mixer_names())}")
    elif config.cell not in rnnjax.cells.names():
        raise ConfigError(
            f"cell={config.cell!r} is not a registered cell; choose one of: {', '.join(rnnjax.cells.names())}"
        )
    for key, kind in _field_types(type(config)).items():
        value = getattr(config, key)
        # 0 means "none" for these: conv=0 no convolution, max_letters=0 all the text
        least = 0 if key in ("seed", "warmup_steps", "conv", "max_letters") else 1
        if kind is int and value < least:
            raise ConfigError(f"config key {key!r} must be >= {least}, got {value}")
        if kind is float and not math.isfinite(value):
            raise ConfigError(f"config key {key!r} must be finite, got {value}")
    if getattr(config, "seq2seq", False):
        from rnnjax.seq2seq import SCORES

        if config.attention not in ("none", *SCORES):
            raise ConfigError(f"attention={config.attention!r}: choose one of none, {', '.join(SCORES)}")
        if config.attention == "dot" and config.bidirectional:
            raise ConfigError(
                "attention='dot' compares the decoder's state with the encoder's outputs, which are twice as "
                "wide with bidirectional=true; use attention=general or additive, or bidirectional=false"
            )
    if config.precision not in ("float32", "bf16"):
        raise ConfigError(f"precision={config.precision!r}: choose float32 or bf16")
    for key in ("learning_rate", "grad_clip"):
        if getattr(config, key) <= 0:
            raise ConfigError(f"config key {key!r} must be > 0, got {getattr(config, key)}")
    if config.weight_decay < 0:
        raise ConfigError(f"config key 'weight_decay' must be >= 0, got {config.weight_decay}")


def to_dict(config: TrainConfig) -> dict[str, Any]:
    return {"__class__": f"{type(config).__module__}.{type(config).__qualname__}", **dataclasses.asdict(config)}
