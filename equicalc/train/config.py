"""Training configuration: YAML -> checked dataclasses.

A config has five sections; every key, its type, default and meaning is in the
field definitions below (``config_reference()`` prints them as a table, the
README shows that table). Unknown keys, wrong types and impossible values are
rejected with a message naming the key and what is allowed.

    run_dir: runs/cuzr
    data:     {train: train.extxyz.gz, val: val.extxyz.gz, test: test.extxyz.gz}
    model:    {architecture: nequip, r_max: 5.0, l_max: 1, num_layers: 3, num_features: 32}
    loss:     {energy_weight: 10, forces_weight: 1, stress_weight: 100}
    training: {batch_size: 4, lr: 0.005, max_epochs: 200, scheduler: plateau}

Data paths are relative to the config file's folder; ``run_dir`` and
``model_path`` are relative to the current directory.
"""
from __future__ import annotations

import difflib
import inspect
import os
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Optional, Union

__all__ = ["Config", "DataConfig", "ModelConfig", "LossConfig", "TrainingConfig", "load_config",
           "config_from_dict", "config_reference"]


def _f(default, doc: str, choices=None, minimum=None, exclusive=False):
    meta = {"doc": doc, "choices": choices, "minimum": minimum, "exclusive": exclusive}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    """``data:`` where the reference frames are and how their labels are named."""

    train: str = _f(MISSING, "training data file (extxyz or any ase.io.read format), relative to the config file")
    val: Optional[str] = _f(None, "validation file; if absent, `val_size` frames are split off `train`")
    test: Optional[str] = _f(None, "test file; if absent, `test_size` frames are split off `train`")
    val_size: Union[int, float] = _f(0.1, "validation frames split off `train`: a count, or a fraction < 1", minimum=0)
    test_size: Union[int, float] = _f(0.0, "test frames split off `train`: a count, or a fraction < 1", minimum=0)
    split_seed: int = _f(0, "seed of the train/val/test split")
    energy_key: str = _f("energy", "key of the total energy (eV) in info or calculator results")
    forces_key: str = _f("forces", "key of the forces (eV/Å) in arrays or calculator results")
    stress_key: Optional[str] = _f("stress", "key of the stress (eV/Å³, ASE sign, Voigt-6 or 3x3); null to ignore")
    species: Optional[list] = _f(None, "chemical symbols of the model; default: those in the training data")


@dataclass
class ModelConfig:
    """``model:`` the architecture and its hyperparameters.

    Besides ``architecture``, ``dtype`` and ``seed``, any keyword argument of the
    architecture's class is accepted (for NequIP: ``r_max``, ``l_max``, ``parity``,
    ``num_layers``, ``num_features``, ``num_basis``, ``radial_hidden``,
    ``radial_layers``, ``readout_hidden``, ``resnet``, ``poly_p``,
    ``avg_num_neighbors``); see ``equicalc.nn.NequIP``. ``avg_num_neighbors``,
    the per-species shifts and the scale default to the training-set statistics,
    unless ``init_from`` names a model to fine-tune: then they are that model's.
    """

    architecture: str = _f("nequip", "network architecture", choices=("nequip", "allegro"))
    dtype: str = _f("float32", "precision of the weights", choices=("float32", "float64"))
    seed: int = _f(0, "seed of the weight initialisation")
    init_from: Optional[str] = _f(None, "fine-tuning: start from the weights, shifts and scale of this model file "
                                        "(.pth) or checkpoint (.pt), relative to the config file; options given "
                                        "here must agree with it")
    options: Dict[str, Any] = _f({}, "(the architecture's hyperparameters, given directly under `model:`)")


@dataclass
class LossConfig:
    """``loss:`` weighted sum of energy-per-atom, force and stress errors."""

    energy_weight: float = _f(10.0, "weight of the energy-per-atom term ((eV/atom)²)", minimum=0)
    forces_weight: float = _f(1.0, "weight of the force-component term ((eV/Å)²)", minimum=0)
    stress_weight: float = _f(100.0, "weight of the stress-component term ((eV/Å³)²), frames with stress only", minimum=0)
    kind: str = _f("mse", "squared errors or Huber", choices=("mse", "huber"))
    huber_delta: float = _f(0.01, "Huber transition point (in each term's unit)", minimum=0, exclusive=True)


@dataclass
class TrainingConfig:
    """``training:`` optimiser, schedule, stopping and hardware."""

    batch_size: int = _f(4, "structures per optimisation step", minimum=1)
    eval_batch_size: int = _f(16, "structures per pass in validation and test", minimum=1)
    max_epochs: int = _f(100, "passes over the training set", minimum=1)
    optimizer: str = _f("adam", "optimiser", choices=("adam", "adamw"))
    lr: float = _f(5e-3, "peak learning rate", minimum=0, exclusive=True)
    weight_decay: float = _f(0.0, "weight decay (AdamW: decoupled)", minimum=0)
    scheduler: str = _f("plateau", "learning-rate schedule", choices=("plateau", "cosine", "constant"))
    plateau_factor: float = _f(0.5, "plateau: factor applied to the rate", minimum=0, exclusive=True)
    plateau_patience: int = _f(10, "plateau: epochs without improvement before reducing", minimum=0)
    warmup_epochs: float = _f(0.0, "linear warm-up from 0 to `lr` over this many epochs (any schedule)", minimum=0)
    min_lr: float = _f(1e-6, "floor of the rate; plateau stops training when it is reached", minimum=0)
    grad_clip: Optional[float] = _f(10.0, "clip the gradient norm to this value; null for none", minimum=0, exclusive=True)
    ema_decay: Optional[float] = _f(0.99, "decay of the exponential moving average of the weights; null for none", minimum=0)
    early_stopping_patience: Optional[int] = _f(None, "stop after this many epochs without a better validation loss", minimum=1)
    max_minutes: Optional[float] = _f(None, "wall-clock limit of one invocation; resume with --restart", minimum=0, exclusive=True)
    seed: int = _f(0, "seed of the batch order")
    device: str = _f("auto", "auto (CUDA when available), cpu, cuda, cuda:N")
    num_threads: Optional[int] = _f(None, "CPU threads for torch; null: torch's default", minimum=1)


@dataclass
class Config:
    """A whole training run."""

    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    run_dir: str = "runs/train"
    model_path: Optional[str] = None
    base_dir: str = field(default=".", repr=False)  # the config file's folder: data paths are resolved from it

    def to_dict(self) -> dict:
        """Plain dict (YAML-able) as the config file would say it: model options flattened back
        under ``model``, data paths relative to the config file's folder again (so nothing
        stored in checkpoints or model files names folders of the machine that trained)."""
        d = asdict(self)
        base = os.path.abspath(d.pop("base_dir"))
        options = d["model"].pop("options")
        d["model"].update(options)
        for section, key in (("data", "train"), ("data", "val"), ("data", "test"), ("model", "init_from")):
            path = d[section][key]
            if path is not None and os.path.abspath(path).startswith(base + os.sep):
                d[section][key] = os.path.relpath(os.path.abspath(path), base)
        return d


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "training": TrainingConfig}
_TOP_KEYS = ("data", "model", "loss", "training", "run_dir", "model_path")


def _unknown(key: str, allowed, where: str) -> ValueError:
    hint = difflib.get_close_matches(key, list(allowed), n=1)
    extra = f"; did you mean {hint[0]!r}?" if hint else ""
    return ValueError(f"config: unknown key '{where}{key}'{extra} (allowed: {', '.join(sorted(allowed))})")


def _type_name(tp) -> str:
    if typing.get_origin(tp) is Union:
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _check_value(value, tp, name: str, meta: dict):
    """Coerce/check one value against a type annotation and field metadata."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union:
        if value is None:
            if type(None) in args:
                return None
            raise ValueError(f"config: '{name}' must not be null")
        options = [a for a in args if a is not type(None)]
        errors = []
        for a in options:
            try:
                return _check_value(value, a, name, meta)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(f"config: '{name}' must be {' or '.join(_type_name(a) for a in options)}, got {value!r}")
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"config: '{name}' must be true or false, got {value!r}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"config: '{name}' must be an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"config: '{name}' must be a number, got {value!r}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise ValueError(f"config: '{name}' must be a string, got {value!r}")
    elif tp is list or origin is list:
        if not isinstance(value, list):
            raise ValueError(f"config: '{name}' must be a list, got {value!r}")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ValueError(f"config: '{name}' must be one of {', '.join(map(str, choices))}; got {value!r}")
    minimum = meta.get("minimum")
    if minimum is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < minimum or (meta.get("exclusive") and value == minimum):
            rel = ">" if meta.get("exclusive") else ">="
            raise ValueError(f"config: '{name}' must be {rel} {minimum}, got {value!r}")
    return value


def _section(cls, raw, where: str, extra_ok=()):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"config: '{where.rstrip('.')}' must be a mapping of keys to values, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if f.name != "options"}
    values, rest = {}, {}
    for key, value in raw.items():
        if key in known:
            f = known[key]
            values[key] = _check_value(value, hints[key], where + key, dict(f.metadata))
        elif key in extra_ok:
            rest[key] = value
        else:
            raise _unknown(key, list(known) + list(extra_ok), where)
    for name, f in known.items():
        if f.default is MISSING and f.default_factory is MISSING and name not in values:
            raise ValueError(f"config: '{where}{name}' is required ({f.metadata.get('doc', '')})")
    return values, rest


def architecture_options(architecture: str) -> Dict[str, inspect.Parameter]:
    """Hyperparameters accepted by an architecture (keyword arguments of its class)."""
    from ..model_io import ARCHITECTURES

    params = inspect.signature(ARCHITECTURES[architecture].__init__).parameters
    return {k: p for k, p in params.items() if k not in ("self", "species", "scales", "shifts")}


def _check_option(value, param: inspect.Parameter, name: str):
    default = param.default
    if default is inspect.Parameter.empty or default is None:
        return value
    for tp in (bool, int, float):
        if isinstance(default, tp):
            return _check_value(value, tp, name, {})
    return value


def config_from_dict(raw: dict, base_dir: Union[str, os.PathLike] = ".") -> Config:
    """A checked ``Config`` from a plain dict; relative data paths are taken from ``base_dir``."""
    if not isinstance(raw, dict):
        raise ValueError("config: the file must hold a mapping with sections data, model, loss, training")
    for key in raw:
        if key not in _TOP_KEYS:
            raise _unknown(key, _TOP_KEYS, "")
    if "data" not in raw:
        raise ValueError("config: section 'data' is required (at least data.train)")
    data_vals, _ = _section(DataConfig, raw["data"], "data.")
    for key in ("train", "val", "test"):
        if data_vals.get(key) is not None:
            p = Path(data_vals[key]).expanduser()
            data_vals[key] = str(p if p.is_absolute() else Path(base_dir) / p)
    raw_model = raw.get("model") or {}
    arch = raw_model.get("architecture", "nequip") if isinstance(raw_model, dict) else "nequip"
    from ..model_io import ARCHITECTURES

    if arch not in ARCHITECTURES:
        raise ValueError(f"config: 'model.architecture' must be one of {', '.join(ARCHITECTURES)}; got {arch!r}")
    allowed = architecture_options(arch)
    model_vals, options = _section(ModelConfig, raw_model, "model.", extra_ok=tuple(allowed))
    if model_vals.get("init_from") is not None:
        p = Path(model_vals["init_from"]).expanduser()
        model_vals["init_from"] = str(p if p.is_absolute() else Path(base_dir) / p)
    for key, value in options.items():
        options[key] = _check_option(value, allowed[key], f"model.{key}")
    loss_vals, _ = _section(LossConfig, raw.get("loss"), "loss.")
    train_vals, _ = _section(TrainingConfig, raw.get("training"), "training.")
    for key in ("run_dir", "model_path"):
        if key in raw and raw[key] is not None and not isinstance(raw[key], str):
            raise ValueError(f"config: '{key}' must be a path (string), got {raw[key]!r}")
    cfg = Config(
        data=DataConfig(**data_vals),
        model=ModelConfig(**model_vals, options=options),
        loss=LossConfig(**loss_vals),
        training=TrainingConfig(**train_vals),
        run_dir=raw.get("run_dir") or "runs/train",
        model_path=raw.get("model_path"),
        base_dir=str(base_dir),
    )
    if cfg.loss.energy_weight == cfg.loss.forces_weight == cfg.loss.stress_weight == 0:
        raise ValueError("config: at least one of loss.energy_weight, forces_weight, stress_weight must be > 0")
    return cfg


def load_config(path: Union[str, os.PathLike]) -> Config:
    """Read and check a YAML training config."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    return config_from_dict(raw, base_dir=path.resolve().parent)


def config_reference() -> str:
    """Every config key with its type, default and meaning, as a Markdown table."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    rows.append("| `run_dir` | str | `runs/train` | folder of checkpoints, metrics.csv, log and plots |")
    rows.append("| `model_path` | str | `<run_dir>/model.pth` | where the final model is written |")
    for section, cls in _SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            if f.name == "options":
                rows.append("| `model.<hyperparameter>` | | | any keyword of the architecture "
                            "(`equicalc.nn.NequIP`, `equicalc.nn.Allegro`) |")
                continue
            if f.default is not MISSING:
                default = f"`{f.default}`" if f.default is not None else "null"
            else:
                default = "required"
            tp = _type_name(hints[f.name])
            doc = f.metadata.get("doc", "")
            if f.metadata.get("choices"):
                doc += " (" + ", ".join(map(str, f.metadata["choices"])) + ")"
            rows.append(f"| `{section}.{f.name}` | {tp} | {default} | {doc} |")
    return "\n".join(rows)
