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

import os
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Optional, Union

from ..checks import checked_fields, option, type_name, unknown_key
from ..nn.common import normalize_species
from ..nn.specs import SPECS

__all__ = ["Config", "DataConfig", "ModelConfig", "LossConfig", "TrainingConfig", "load_config",
           "config_from_dict", "config_reference"]


@dataclass
class DataConfig:
    """``data:`` where the reference frames are and how their labels are named."""

    train: str = option(MISSING, "training data file (extxyz or any ase.io.read format), relative to the config file")
    val: Optional[str] = option(None, "validation file; if absent, `val_size` frames are split off `train`")
    test: Optional[str] = option(None, "test file; if absent, `test_size` frames are split off `train`")
    val_size: Union[int, float] = option(0.1, "validation frames split off `train`: a count, or a fraction < 1", minimum=0)
    test_size: Union[int, float] = option(0.0, "test frames split off `train`: a count, or a fraction < 1", minimum=0)
    split_seed: int = option(0, "seed of the train/val/test split")
    energy_key: str = option("energy", "key of the total energy (eV) in info or calculator results")
    forces_key: str = option("forces", "key of the forces (eV/Å) in arrays or calculator results")
    stress_key: Optional[str] = option("stress", "key of the stress (eV/Å³, ASE sign, Voigt-6 or 3x3); null to ignore")
    species: Optional[list] = option(None, "chemical symbols of the model; default: those in the training data")
    pinned: Optional[str] = option(None, "pinned frames: a few small labelled cells evaluated at every step besides "
                                   "the batch (two frames with the same info `pair` are fitted by their difference; "
                                   "equicalc.train.pinned), relative to the config file")


@dataclass
class ModelConfig:
    """``model:`` the architecture and its hyperparameters.

    Besides ``architecture``, ``dtype``, ``seed`` and ``init_from``, the fields of
    the architecture's spec are accepted and checked (``equicalc.nn.NequIPSpec``,
    ``equicalc.nn.AllegroSpec``: ``r_max``, ``l_max``, ``num_layers``...). ``avg_num_neighbors``,
    the per-species shifts and the scale default to the training-set statistics,
    unless ``init_from`` names a model to fine-tune: then they are that model's
    (``shifts`` given here replace its shifts).
    """

    architecture: str = option("nequip", "network architecture", choices=("nequip", "allegro"))
    dtype: str = option("float32", "precision of the weights", choices=("float32", "float64"))
    seed: int = option(0, "seed of the weight initialisation")
    init_from: Optional[str] = option(None, "fine-tuning: start from the weights, shifts and scale of this model file "
                                        "(.pth) or checkpoint (.pt), relative to the config file; options given "
                                        "here must agree with it")
    shifts: Optional[Dict[str, float]] = option(None, "per-species energy shifts E0, eV, e.g. {Cu: 0.0, Zr: 0.0} (the "
                                                "reference's isolated-atom energies, which a model then gives an atom "
                                                "without neighbours exactly), kept fixed in training; null: least "
                                                "squares of the training energies on the species counts (or "
                                                "init_from's shifts), trained")
    options: Dict[str, Any] = option({}, "(the architecture's hyperparameters, given directly under `model:`)")


@dataclass
class LossConfig:
    """``loss:`` weighted sum of energy-per-atom, force and stress errors."""

    energy_weight: float = option(10.0, "weight of the energy-per-atom term ((eV/atom)²)", minimum=0)
    forces_weight: float = option(1.0, "weight of the force-component term ((eV/Å)²)", minimum=0)
    stress_weight: float = option(100.0, "weight of the stress-component term ((eV/Å³)²), frames with stress only", minimum=0)
    kind: str = option("mse", "squared errors or Huber", choices=("mse", "huber"))
    huber_delta: float = option(0.01, "Huber transition point (in each term's unit)", minimum=0, exclusive=True)
    config_type_weights: Dict[str, float] = option({}, "factor on every term of the frames of each extxyz "
                                                   "`config_type` named here, e.g. {lattice: 10}; others 1 "
                                                   "(training and validation loss; not the error metrics)", minimum=0)
    pinned_weight: float = option(1.0, "factor on the three weights for the errors of `data.pinned`'s frames, "
                                  "each term their mean squared error", minimum=0)


@dataclass
class TrainingConfig:
    """``training:`` optimiser, schedule, stopping and hardware."""

    batch_size: int = option(4, "structures per optimisation step", minimum=1)
    eval_batch_size: int = option(16, "structures per pass in validation and test", minimum=1)
    max_epochs: int = option(100, "passes over the training set", minimum=1)
    optimizer: str = option("adam", "optimiser", choices=("adam", "adamw"))
    lr: float = option(5e-3, "peak learning rate", minimum=0, exclusive=True)
    weight_decay: float = option(0.0, "weight decay (AdamW: decoupled)", minimum=0)
    scheduler: str = option("plateau", "learning-rate schedule", choices=("plateau", "cosine", "constant"))
    plateau_factor: float = option(0.5, "plateau: factor applied to the rate", minimum=0, exclusive=True, maximum=1,
                                   exclusive_max=True)
    plateau_patience: int = option(10, "plateau: epochs without improvement before reducing", minimum=0)
    warmup_epochs: float = option(0.0, "linear warm-up from 0 to `lr` over this many epochs (any schedule)", minimum=0)
    min_lr: float = option(1e-6, "floor of the rate; plateau stops training when it is reached", minimum=0)
    grad_clip: Optional[float] = option(10.0, "clip the gradient norm to this value; null for none", minimum=0, exclusive=True)
    ema_decay: Optional[float] = option(0.99, "decay of the exponential moving average of the weights; null for none",
                                        minimum=0, maximum=1, exclusive_max=True)
    early_stopping_patience: Optional[int] = option(None, "stop after this many epochs without a better validation loss", minimum=1)
    max_minutes: Optional[float] = option(None, "wall-clock limit of one invocation; resume with --restart", minimum=0, exclusive=True)
    seed: int = option(0, "seed of the batch order")
    device: str = option("auto", "auto (CUDA when available), cpu, cuda, cuda:N")
    num_threads: Optional[int] = option(None, "CPU threads for torch and the numba kernels; null: their default",
                                        minimum=1)


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

    def model_r_max(self) -> float:
        """The model's cutoff (Å): ``model.r_max``, or the architecture's default."""
        return float(self.model.options.get("r_max", SPECS[self.model.architecture].r_max))

    def to_dict(self) -> dict:
        """Plain dict (YAML-able) as the config file would say it: model options flattened back
        under ``model``, data paths relative to the config file's folder again (so nothing
        stored in checkpoints or model files names folders of the machine that trained)."""
        d = asdict(self)
        base = os.path.abspath(d.pop("base_dir"))
        options = d["model"].pop("options")
        d["model"].update(options)
        for section, key in (("data", "train"), ("data", "val"), ("data", "test"), ("data", "pinned"),
                             ("model", "init_from")):
            path = d[section][key]
            if path is not None and os.path.abspath(path).startswith(base + os.sep):
                d[section][key] = os.path.relpath(os.path.abspath(path), base)
        return d


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "training": TrainingConfig}
_TOP_KEYS = ("data", "model", "loss", "training", "run_dir", "model_path")


def _model_section(raw, base_dir) -> ModelConfig:
    """``model:``: the run's own keys, and the architecture's hyperparameters checked against its spec."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"config: 'model' must be a mapping of keys to values, got {raw!r}")
    arch = raw.get("architecture", "nequip")
    if arch not in SPECS:
        raise ValueError(f"config: 'model.architecture' must be one of {', '.join(SPECS)}; got {arch!r}")
    own = {f.name for f in fields(ModelConfig) if f.name != "options"}
    spec_keys = {f.name for f in fields(SPECS[arch]) if f.name != "species"}
    for key in raw:
        if key not in own and key not in spec_keys:
            raise unknown_key(key, own | spec_keys, "model.")
    values = checked_fields(ModelConfig, {k: v for k, v in raw.items() if k in own}, "model.", skip=("options",))
    options = checked_fields(SPECS[arch], {k: v for k, v in raw.items() if k in spec_keys}, "model.",
                             skip=("species",))
    if values.get("init_from") is not None:
        p = Path(values["init_from"]).expanduser()
        values["init_from"] = str(p if p.is_absolute() else Path(base_dir) / p)
    return ModelConfig(**values, options=options)


def config_from_dict(raw: dict, base_dir: Union[str, os.PathLike] = ".") -> Config:
    """A checked ``Config`` from a plain dict; relative data paths are taken from ``base_dir``."""
    if not isinstance(raw, dict):
        raise ValueError("config: the file must hold a mapping with sections data, model, loss, training")
    for key in raw:
        if key not in _TOP_KEYS:
            raise unknown_key(key, _TOP_KEYS)
    if "data" not in raw:
        raise ValueError("config: section 'data' is required (at least data.train)")
    data_vals = checked_fields(DataConfig, raw["data"], "data.")
    if data_vals.get("species") is not None:
        try:
            data_vals["species"] = normalize_species(data_vals["species"])
        except ValueError as exc:
            raise ValueError(f"config: 'data.species': {exc}") from None
    for key in ("train", "val", "test", "pinned"):
        if data_vals.get(key) is not None:
            p = Path(data_vals[key]).expanduser()
            data_vals[key] = str(p if p.is_absolute() else Path(base_dir) / p)
    for key in ("run_dir", "model_path"):
        if key in raw and raw[key] is not None and not isinstance(raw[key], str):
            raise ValueError(f"config: '{key}' must be a path (string), got {raw[key]!r}")
    cfg = Config(
        data=DataConfig(**data_vals),
        model=_model_section(raw.get("model"), base_dir),
        loss=LossConfig(**checked_fields(LossConfig, raw.get("loss") or {}, "loss.")),
        training=TrainingConfig(**checked_fields(TrainingConfig, raw.get("training") or {}, "training.")),
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


def _reference_row(key: str, tp, f, prefix: str = "") -> str:
    if f.default is not MISSING:
        default = f"`{f.default}`" if f.default is not None else "null"
    elif f.default_factory is not MISSING:
        default = f"`{f.default_factory()}`"
    else:
        default = "required"
    doc = prefix + f.metadata.get("doc", "")
    if f.metadata.get("choices"):
        doc += " (" + ", ".join(map(str, f.metadata["choices"])) + ")"
    return f"| `{key}` | {type_name(tp)} | {default} | {doc} |"


def _spec_rows() -> list:
    """Rows of the architectures' hyperparameters: once when all specs share a field, else one per architecture."""
    def shared(f):
        return all(any(g.name == f.name and g.default == f.default and g.metadata == f.metadata for g in fields(spec))
                   for spec in SPECS.values())

    rows, seen = [], set()
    for arch, spec in SPECS.items():
        hints = typing.get_type_hints(spec)
        for f in fields(spec):
            common = shared(f)
            if f.name == "species" or (common and f.name in seen):
                continue
            seen.add(f.name)
            rows.append(_reference_row(f"model.{f.name}", hints[f.name], f, "" if common else f"{arch} only: "))
    return rows


def config_reference() -> str:
    """Every config key with its type, default and meaning, as a Markdown table.

    The ``model`` hyperparameters come from the architectures' specs
    (``equicalc.nn.NequIPSpec``, ``equicalc.nn.AllegroSpec``).
    """
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    rows.append("| `run_dir` | str | `runs/train` | folder of checkpoints, metrics.csv, log and plots |")
    rows.append("| `model_path` | str | `<run_dir>/model.pth` | where the final model is written |")
    for section, cls in _SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            rows += _spec_rows() if f.name == "options" else [_reference_row(f"{section}.{f.name}", hints[f.name], f)]
    return "\n".join(rows)
