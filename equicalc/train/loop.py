"""The training loop: ``train(config)`` from reference frames to ``model.pth``.

Every epoch: one pass over the shuffled training set (batch order seeded by
``training.seed`` and the epoch number), validation with the EMA weights, a row
in ``<run_dir>/metrics.csv``, and checkpoints ``checkpoint_last.pt`` (always)
and ``checkpoint_best.pt`` (lowest validation loss), both written atomically.
``train(config, restart=True)`` resumes from ``checkpoint_last.pt`` and ends
with the same weights as an uninterrupted run. At the end (all epochs, early
stop, learning-rate floor or wall-clock limit) the best EMA weights are written
to ``model_path`` with the test-split metrics in their metadata, and a parity
plot ``parity.png`` is drawn.
"""
from __future__ import annotations

import copy
import csv
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch

from ..data import (Batch, GraphDataset, check_species, collate, dataset_statistics, frames_by_split, read_frames,
                    split_indices)
from ..device import resolve_device, resolve_dtype
from ..evaluate import Accumulator, error_metrics, format_metrics, parity_plot, predict, stress_from_virial
from ..files import atomic_copy, remove_temporary
from ..memory import keep_freed_memory
from ..model_io import build_model, load_model, model_from_payload, save_model
from ..nn.forces import compute_properties
from ..nn.threads import match_threads
from ..preprocessed import PreprocessedDataset, is_preprocessed
from .checkpoint import load_checkpoint, save_checkpoint
from .config import Config, DataConfig
from .distributed import Ranks, join, leave, shard
from .pinned import PinnedFrames, joined

__all__ = ["train", "setup", "train_one_epoch", "take_step", "step_batches", "step_on", "validate", "end_epoch", "loss_terms",
           "batch_counts", "TrainingRun"]

_CSV_FIELDS = [
    "epoch", "time_s", "lr", "train_loss", "val_loss",
    "train_energy_mae", "train_energy_rmse", "train_forces_mae", "train_forces_rmse", "train_stress_mae",
    "val_energy_mae", "val_energy_rmse", "val_forces_mae", "val_forces_rmse", "val_stress_mae",
    "structures_per_s",
]


def batch_counts(batch: Batch) -> Dict[str, int]:
    """What each loss term averages over in ``batch``: structures, force components, stress components."""
    return {"energy": batch.graph.num_graphs, "forces": 3 * int(batch.graph.n_atoms.sum()),
            "stress": 9 * int(batch.has_stress.sum())}


def _weighted_error_sum(err: torch.Tensor, weight: torch.Tensor, loss_cfg) -> torch.Tensor:
    """Sum of the squared (``mse``) or Huber errors ``err``, each row (structure or atom) times its ``weight``."""
    if loss_cfg.kind == "huber":
        each = torch.nn.functional.huber_loss(err, torch.zeros_like(err), delta=loss_cfg.huber_delta,
                                              reduction="none")
    else:
        each = err ** 2
    return torch.sum(each.reshape(len(weight), -1) * weight[:, None])


def loss_terms(out: Dict[str, torch.Tensor], batch: Batch, loss_cfg, counts: Optional[Dict[str, int]] = None,
               scale: float = 1.0, frame_weights: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
    """Weighted loss and its parts for one batch.

    Energy per atom (eV/atom), force components (eV/Å) and stress components
    (eV/Å³, structures with a reference stress only), each squared (``mse``) or
    Huber, summed and divided by its count, times its weight. The counts are the
    batch's own (``batch_counts``) unless given: under DDP they are those of the
    whole step's batch, of which ``batch`` is one rank's share, so that the
    ranks' terms add up to the mean over all of it. ``scale`` multiplies every part;
    ``frame_weights`` (one per structure, ``loss.config_type_weights``) every error of its structure.
    """
    counts = counts or batch_counts(batch)
    device = out["energy"].device
    w = torch.ones(batch.graph.num_graphs, dtype=torch.float64, device=device) if frame_weights is None \
        else frame_weights.to(device=device, dtype=torch.float64)

    def term(err, weight, key):
        return _weighted_error_sum(err, weight, loss_cfg) * (scale / max(counts[key], 1))

    n_atoms = batch.graph.n_atoms.to(device)
    parts = {"energy": term((out["energy"].double() - batch.energy) / n_atoms, w, "energy")}
    total = loss_cfg.energy_weight * parts["energy"]
    if "forces" in out:
        per_atom = w[batch.graph.batch.to(device)]
        parts["forces"] = term(out["forces"].double() - batch.forces, per_atom, "forces")
        total = total + loss_cfg.forces_weight * parts["forces"]
    if "stress" in out and bool(batch.has_stress.any()):
        has = batch.has_stress.to(device)
        parts["stress"] = term((out["stress"].double() - batch.stress)[has], w[has], "stress")
        total = total + loss_cfg.stress_weight * parts["stress"]
    parts["total"] = total
    return parts


class _Schedule:
    """Learning rate per optimisation step: warm-up, then constant, cosine or reduce-on-plateau."""

    def __init__(self, cfg, steps_per_epoch: int):
        self.cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        self.total = cfg.max_epochs * steps_per_epoch
        self.warm = cfg.warmup_epochs * steps_per_epoch
        self.plateau_lr = cfg.lr
        self.plateau_best = math.inf
        self.plateau_bad = 0

    def lr(self, step: int) -> float:
        cfg = self.cfg
        if cfg.scheduler == "cosine":
            frac = min(1.0, max(0.0, (step - self.warm) / max(1.0, self.total - self.warm)))
            base = cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * frac))
        elif cfg.scheduler == "plateau":
            base = self.plateau_lr
        else:
            base = cfg.lr
        if step < self.warm:
            base *= (step + 1) / self.warm
        return base

    def epoch_end(self, val_loss: float) -> None:
        if self.cfg.scheduler != "plateau":
            return
        if val_loss < self.plateau_best * (1 - 1e-4):
            self.plateau_best, self.plateau_bad = val_loss, 0
        else:
            self.plateau_bad += 1
            if self.plateau_bad > self.cfg.plateau_patience:
                self.plateau_lr = max(self.cfg.min_lr, self.plateau_lr * self.cfg.plateau_factor)
                self.plateau_bad = 0

    def floor_reached(self) -> bool:
        return self.cfg.scheduler == "plateau" and self.plateau_lr <= self.cfg.min_lr

    def state(self) -> dict:
        return {"plateau_lr": self.plateau_lr, "plateau_best": self.plateau_best, "plateau_bad": self.plateau_bad}

    def load(self, state: dict) -> None:
        self.plateau_lr = state["plateau_lr"]
        self.plateau_best = state["plateau_best"]
        self.plateau_bad = state["plateau_bad"]


@torch.no_grad()
def _update_ema(ema_model, model, decay: float, step: int) -> None:
    d = min(decay, (1.0 + step) / (10.0 + step))
    for pe, p in zip(ema_model.parameters(), model.parameters()):
        pe.mul_(d).add_(p.detach(), alpha=1.0 - d)


def _gathered(arrays: Dict[str, np.ndarray], ranks: Ranks) -> Dict[str, np.ndarray]:
    """``Accumulator.arrays()`` of every rank joined, in rank order."""
    if not ranks.distributed:
        return arrays
    parts = ranks.gather(arrays)
    return {k: np.concatenate([p[k] for p in parts]) for k in arrays}


def validate(model, dataset, cfg: Config, device, ranks: Ranks = Ranks(),
             frame_weights: Optional[np.ndarray] = None, pinned: Optional[PinnedFrames] = None) -> Dict[str, float]:
    """Error metrics and the loss (same form as the training loss) of ``model`` on a whole split.

    ``frame_weights`` (one per structure of ``dataset``, ``loss.config_type_weights``) weigh the loss as in
    training; the error metrics are unweighted. The ``pinned`` frames' term (``pinned_loss``) is added to the
    loss, as in every training step. Under DDP each rank evaluates a contiguous part of the split and every
    rank gets the metrics of all of it.
    """
    factors = np.ones(len(dataset)) if frame_weights is None else np.asarray(frame_weights, dtype=float)
    if ranks.distributed:
        dataset = torch.utils.data.Subset(dataset, shard(np.arange(len(dataset)), ranks).tolist())
    acc = predict(model, dataset, batch_size=cfg.training.eval_batch_size, device=device,
                  stress=cfg.loss.stress_weight > 0)
    arrays = _gathered(acc.arrays(), ranks)
    m = error_metrics(arrays)
    # the validation loss uses the training loss' form on the whole set (MSE or Huber of the same units)
    w = factors[arrays["index"]]
    terms = [((arrays["energy_pred"] - arrays["energy_ref"]) / arrays["n_atoms"], w),
             (arrays["forces_pred"] - arrays["forces_ref"], np.repeat(w, arrays["n_atoms"].astype(int))),
             (arrays["stress_pred"] - arrays["stress_ref"], factors[arrays["stress_index"]])]
    lc = cfg.loss

    def term(err, weight):
        err = torch.as_tensor(err)
        if err.numel() == 0:
            return 0.0
        return float(_weighted_error_sum(err, torch.as_tensor(weight), lc) / err.numel())

    m["loss"] = sum(k * term(err, weight) for k, (err, weight) in
                    zip((lc.energy_weight, lc.forces_weight, lc.stress_weight), terms))
    if pinned is not None:
        m["pinned_loss"] = float(pinned.loss(_pinned_outputs(model, pinned), lc))
        m["loss"] += m["pinned_loss"]
    return m


def _pinned_outputs(model, pinned: PinnedFrames) -> Dict[str, torch.Tensor]:
    """``model``'s energy, forces and stress on the pinned frames (no graph kept for training)."""
    out = compute_properties(model, pinned.batch.graph, forces=True, stress=True)
    out["stress"] = stress_from_virial(out["virial"], pinned.batch)
    return {k: v.detach() for k, v in out.items()}


class _Log:
    """Lines to ``<run_dir>/log.txt`` (and the console); silent on every rank but rank 0."""

    def __init__(self, path: Path, echo: bool, main: bool = True):
        self.path, self.echo, self.main = path, echo, main

    def __call__(self, msg: str) -> None:
        if not self.main:
            return
        with open(self.path, "a") as fh:
            fh.write(msg + "\n")
        if self.echo:
            from tqdm.auto import tqdm

            tqdm.write(msg)


@dataclass
class TrainingRun:
    """Everything one training run holds between steps (``setup`` makes it)."""

    cfg: Config
    device: torch.device
    run_dir: Path
    log: Callable
    data: Dict[str, GraphDataset]
    stats: dict
    model: torch.nn.Module
    ema_model: Optional[torch.nn.Module]
    optimizer: torch.optim.Optimizer
    schedule: _Schedule
    ranks: Ranks = Ranks()
    network: Optional[torch.nn.Module] = None  # what a training step calls: the model, or its DDP wrapper
    state: dict = field(default_factory=lambda: {"epoch": 0, "step": 0, "best_val_loss": math.inf, "best_epoch": 0,
                                                  "bad_epochs": 0})
    frame_weights: Dict[str, np.ndarray] = field(default_factory=dict)  # per split: loss factor of each structure
    pinned: Optional[PinnedFrames] = None  # frames of every step (data.pinned)

    @property
    def eval_model(self):
        return self.ema_model if self.ema_model is not None else self.model

    @property
    def last_path(self) -> Path:
        return self.run_dir / "checkpoint_last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoint_best.pt"


def train(cfg: Config, restart: bool = False, show_progress: bool = True, stop_after_epochs: Optional[int] = None,
          echo: bool = True, overwrite: bool = False) -> Dict[str, object]:
    """Train a model as ``cfg`` says; returns a summary (paths, epochs, test metrics).

    Args:
        cfg: checked configuration (``load_config``).
        restart: resume from ``<run_dir>/checkpoint_last.pt`` (only with the config and data that started it;
            the epoch limits, threads and device may change).
        overwrite: start afresh where ``run_dir`` already holds a run, deleting its files.
        show_progress: progress bar over each epoch's batches.
        stop_after_epochs: end this invocation after so many epochs (as if killed
            after a checkpoint); a later ``restart=True`` call continues.
        echo: print the log to the console (it always goes to ``<run_dir>/log.txt``).
    """
    t_start = time.time()
    ranks = join(cfg.training.device)
    try:
        return _train(cfg, restart, show_progress, stop_after_epochs, echo, overwrite, t_start, ranks)
    finally:
        leave(ranks)


def _train(cfg, restart, show_progress, stop_after_epochs, echo, overwrite, t_start, ranks) -> Dict[str, object]:
    run = setup(cfg, restart, echo, overwrite, ranks)
    tc = cfg.training
    stop_reason, epochs_this_run, epoch_seconds = "max_epochs", 0, 0.0
    while run.state["epoch"] < tc.max_epochs:
        if tc.max_minutes is not None and ranks.from_main(
                lambda: (time.time() - t_start + epoch_seconds) / 60 > tc.max_minutes):
            stop_reason = "max_minutes"
            break
        if stop_after_epochs is not None and epochs_this_run >= stop_after_epochs:
            stop_reason = "stopped"
            break
        t_epoch = time.time()
        record = train_one_epoch(run, show_progress and ranks.main)
        val_m = validate(run.eval_model, run.data["val"], cfg, run.device, ranks, run.frame_weights.get("val"),
                         run.pinned)
        if not math.isfinite(val_m["loss"]):
            raise RuntimeError(f"training stopped: the validation loss of epoch {record['epoch']} is "
                               f"{val_m['loss']}; {_kept(run)}")
        end_epoch(run, record, val_m, t_epoch)
        epoch_seconds = time.time() - t_epoch
        epochs_this_run += 1
        if tc.early_stopping_patience is not None and run.state["bad_epochs"] >= tc.early_stopping_patience:
            stop_reason = "early_stopping"
            break
        if run.schedule.floor_reached():
            stop_reason = "min_lr"
            break
    run.log(f"training stopped ({stop_reason}) after epoch {run.state['epoch']}; best validation loss at epoch "
            f"{run.state['best_epoch']}")
    summary = {"stop_reason": stop_reason, "epoch": run.state["epoch"], "best_epoch": run.state["best_epoch"],
               "run_dir": str(run.run_dir)}
    if ranks.main and stop_reason != "stopped" and run.best_path.exists():
        summary.update(_finish(run))
    return summary


def setup(cfg: Config, restart: bool, echo: bool = True, overwrite: bool = False,
          ranks: Ranks = Ranks()) -> TrainingRun:
    """The data, model, optimiser and schedule of a run: fresh, fine-tuned (``init_from``) or resumed.

    Under DDP rank 0 opens the run folder and computes the statistics, and every rank gets them from it.
    """
    tc = cfg.training
    if tc.num_threads:
        match_threads(tc.num_threads)
    device = resolve_device(tc.device)
    if device.type == "cpu":
        keep_freed_memory()  # the step's large arrays reuse freed memory instead of fresh pages
    if device.type == "cuda" and ranks.distributed:
        device = torch.device("cuda", ranks.local_rank)
    _check_same_config(cfg, ranks)
    run_dir = Path(cfg.run_dir)
    if _restarted_by_torchrun() and not restart:
        # the processes were started again after a failure: resume what was saved, or start afresh
        restart = (run_dir / "checkpoint_last.pt").exists()
        overwrite = not restart
    ckpt = ranks.from_main(lambda: _open_run_dir(cfg, run_dir, restart, overwrite))
    start = _initial_model(cfg) if cfg.model.init_from and not restart else None
    if ranks.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    log = _Log(run_dir / "log.txt", echo, ranks.main)
    if ckpt is not None:
        r_max = ckpt["model"]["config"]["r_max"]
    elif start is not None:
        r_max = start.r_max
    else:
        r_max = cfg.model_r_max()
    data = _read_data(cfg, r_max)
    stats = ranks.from_main(lambda: _statistics(cfg, data["train"], ckpt, start))
    model = _start_model(cfg, stats, ckpt, start, log)
    for split, dataset in data.items():
        _check_species(dataset, model.species, f"the {split} data")
    model = model.to(device)
    log(f"frames: {len(data['train'])} train, {len(data['val'])} val, {len(data.get('test', []))} test; "
        f"species {stats['species']}; force RMS {stats['force_rms']:.3f} eV/Å; <n> = {stats['avg_num_neighbors']:.2f} "
        f"within {r_max:g} Å; least-squares per-species shifts of these data leave "
        f"{1e3 * stats['energy_rmse_after_shift']:.1f} meV/atom")
    log(f"model: {cfg.model.architecture}, {sum(p.numel() for p in model.parameters())} parameters, "
        f"{cfg.model.dtype}, device {device}")
    if cfg.model.shifts is not None:
        log("per-species shifts fixed at " + ", ".join(f"{s} {v:g}" for s, v in cfg.model.shifts.items()) + " eV")
    ema_model = copy.deepcopy(model) if tc.ema_decay is not None else None
    if ema_model is not None:
        for p in ema_model.parameters():
            p.requires_grad_(False)
    network = model
    if ranks.distributed:
        log(f"DistributedDataParallel over {ranks.world} processes ({torch.distributed.get_backend()}): "
            f"{tc.batch_size} structures per process, {tc.batch_size * ranks.world} per step")
        network = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                            else None)
    steps = math.ceil(len(data["train"]) / (tc.batch_size * ranks.world))
    run = TrainingRun(cfg, device, run_dir, log, data, stats, model, ema_model, _optimizer(model, tc),
                      _Schedule(tc, steps), ranks, network)
    run.frame_weights = _frame_weights(cfg, data, log)
    run.pinned = _pinned(cfg, r_max, model.species, device, log)
    run.state["data_sha256"] = data_fingerprint(cfg)
    run.state["effective_batch_size"] = tc.batch_size * ranks.world
    if ckpt is not None:
        _resume(run, ckpt)
    return run


def _check_same_config(cfg: Config, ranks: Ranks) -> None:
    """``ValueError`` on every rank when the ranks were started with different configs (naming the keys)."""
    if not ranks.distributed:
        return
    configs = [_flat(c) for c in ranks.gather(cfg.to_dict())]
    for rank, other in enumerate(configs[1:], start=1):
        differ = sorted(k for k in set(configs[0]) | set(other) if configs[0].get(k) != other.get(k))
        if differ:
            raise ValueError(f"the training processes were started with different configs: rank {rank} differs from "
                             f"rank 0 in {', '.join(differ)}")


def _restarted_by_torchrun() -> bool:
    """Whether torchrun started this process again after a process of the run failed."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


RUN_FILES = ("checkpoint_last.pt", "checkpoint_best.pt", "metrics.csv", "log.txt", "parity.png", "model.pth")
# what may differ when a run resumes: how long and where it runs, not what it computes
# (training.batch_size may change with the number of processes when the batch of a step stays the same)
RESUMABLE_CHANGES = {"run_dir", "model_path", "training.max_epochs", "training.max_minutes", "training.num_threads",
                     "training.device", "training.eval_batch_size", "training.early_stopping_patience",
                     "training.plateau_patience", "training.batch_size"}


def _open_run_dir(cfg: Config, run_dir: Path, restart: bool, overwrite: bool):
    """The checkpoint to resume (checked to be this config's run), or None for a fresh start in ``run_dir``.

    A fresh start over an existing run needs ``overwrite``, which deletes the run's files (and says which).
    Temporary files that a killed write left behind are removed.
    """
    remove_temporary(run_dir)
    last_path = run_dir / "checkpoint_last.pt"
    if restart and overwrite:
        raise ValueError("restart resumes a run and overwrite deletes it: choose one")
    if not restart and last_path.exists():
        if not overwrite:
            raise FileExistsError(f"{run_dir} already holds a training run; resume it with --restart, start afresh "
                                  "with --overwrite (deletes its checkpoints, metrics and log), or choose another run_dir")
        deleted = [p for p in (run_dir / name for name in RUN_FILES) if p.exists()]
        for p in deleted:
            p.unlink()
        print(f"overwrite: deleted {', '.join(str(p) for p in deleted)}")
    if not restart:
        return None
    if not last_path.exists():
        raise FileNotFoundError(f"cannot restart: no checkpoint at {last_path}")
    ckpt = load_checkpoint(last_path)
    _check_same_run(cfg, ckpt, last_path)
    return ckpt


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _check_same_run(cfg: Config, ckpt: dict, path: Path) -> None:
    """``ValueError`` naming what differs when ``cfg`` (or its data files) is not what started the checkpoint's run."""
    then, now = _flat(ckpt.get("config") or {}), _flat(cfg.to_dict())
    default = _flat(Config(data=DataConfig(train="")).to_dict())  # of keys newer than the checkpoint
    then = {**{k: default.get(k) for k in now if k not in then}, **then}
    differ = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k) and k not in RESUMABLE_CHANGES)
    if differ:
        changes = "; ".join(f"{k}: {then.get(k)!r} -> {now.get(k)!r}" for k in differ)
        raise ValueError(f"cannot restart {path}: the config differs from the run's ({changes}); resume with the "
                         "config that started it, or start a new run")
    stored = ckpt.get("state", {}).get("data_sha256")
    if stored:
        current = data_fingerprint(cfg)
        changed = [split for split in stored if stored[split] != current.get(split)]
        if changed:
            raise ValueError(f"cannot restart {path}: the {' and '.join(changed)} data file(s) changed since the "
                             "run started")


def data_fingerprint(cfg: Config) -> dict:
    """SHA-256 of each data file of the config (``train``, ``val``, ``test``, ``pinned``); of a preprocessed file, the
    digest of its contents that it stores (so that a large file is not read through)."""
    import hashlib

    out = {}
    for split in ("train", "val", "test", "pinned"):
        path = getattr(cfg.data, split)
        if path is not None and Path(path).is_file():
            if is_preprocessed(path):
                out[split] = PreprocessedDataset(path).content_sha256
            else:
                out[split] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return out


def _read_data(cfg: Config, r_max: float) -> Dict[str, object]:
    """The splits as graph datasets: preprocessed files read lazily, others read whole with their neighbour
    lists built once. A split without a file is split off the training file (``data.val_size``, ``test_size``)."""
    dc = cfg.data
    files = {"train": dc.train, "val": dc.val, "test": dc.test}
    disk = {name: path for name, path in files.items() if path and is_preprocessed(path)}
    sizes = {"val": dc.val_size, "test": dc.test_size}
    keys = dict(energy_key=dc.energy_key, forces_key=dc.forces_key, stress_key=dc.stress_key)
    if "train" in disk:
        data = {"train": _preprocessed(dc.train, cfg, r_max, "data.train")}
        need = [name for name in ("val", "test") if not files[name]]
        if need:
            parts = split_indices(len(data["train"]), [0] + [sizes[n] for n in need], seed=dc.split_seed)
            whole, data["train"] = data["train"], data["train"].subset(parts[0])
            data.update({name: whole.subset(idx) for name, idx in zip(need, parts[1:]) if len(idx)})
        for name in ("val", "test"):
            if files[name] and name not in disk:
                data[name] = GraphDataset(read_frames(files[name], **keys), r_max)
    else:  # preprocessed validation or test files are neither read here nor split off
        splits = frames_by_split({n: None if n in disk else p for n, p in files.items()},
                                 tuple(0 if n in disk else sizes[n] for n in ("val", "test")), seed=dc.split_seed,
                                 **keys)
        data = {k: GraphDataset(v, r_max) for k, v in splits.items() if v}
    for name in ("val", "test"):
        if name in disk:
            data[name] = _preprocessed(disk[name], cfg, r_max, f"data.{name}")
    if not data.get("val"):
        raise ValueError("no validation frames: give data.val or a data.val_size > 0")
    return data


def _frame_weights(cfg: Config, data: dict, log: Callable) -> Dict[str, np.ndarray]:
    """Each split's loss factor per structure, from ``loss.config_type_weights`` (empty when it is)."""
    import difflib

    weights = cfg.loss.config_type_weights
    if not weights:
        return {}
    types = {}
    for split, dataset in data.items():
        if not hasattr(dataset, "frames"):
            raise ValueError(f"loss.config_type_weights: the {split} data are a preprocessed file, which keeps no "
                             "config_type; train on the extxyz file instead")
        types[split] = np.array([str(f.atoms.info.get("config_type", "")) for f in dataset.frames])
    known = sorted(set(types["train"].tolist()) - {""})
    for name in weights:
        if name not in known:
            hint = difflib.get_close_matches(name, known, n=1)
            raise ValueError(f"loss.config_type_weights: no training frame has config_type {name!r}"
                             f"{f'; did you mean {hint[0]!r}?' if hint else ''} (the training frames have: "
                             f"{', '.join(known) or 'none'})")
    out = {split: np.array([weights.get(t, 1.0) for t in kinds]) for split, kinds in types.items()}
    log("loss factors by config_type: " + ", ".join(
        f"{name} ×{w:g} ({np.count_nonzero(types['train'] == name)} training frames)" for name, w in weights.items()))
    return out


def _pinned(cfg: Config, r_max: float, species, device, log: Callable) -> Optional[PinnedFrames]:
    """The frames of ``data.pinned`` on ``device`` (None without), checked against the model's species."""
    if cfg.data.pinned is None:
        return None
    dc = cfg.data
    pinned = PinnedFrames.read(dc.pinned, r_max, energy_key=dc.energy_key, forces_key=dc.forces_key,
                               stress_key=dc.stress_key)
    check_species(pinned.frames, species, "data.pinned")
    pinned.batch = pinned.batch.to(device)
    log(f"pinned frames: {len(pinned)} ({len(pinned.pairs)} pairs fitted by their differences), "
        f"at every step with the loss weights ×{cfg.loss.pinned_weight:g}")
    return pinned


def _preprocessed(path: str, cfg: Config, r_max: float, what: str) -> PreprocessedDataset:
    dataset = PreprocessedDataset(path)
    dataset.check(r_max, cfg.data.species, what)
    return dataset


def _check_species(dataset, species, what: str) -> None:
    """``ValueError`` naming a frame (or a preprocessed file) that holds a species the model lacks."""
    if isinstance(dataset, GraphDataset):
        check_species(dataset.frames, species, what)
    elif any(s not in species for s in dataset.species):
        raise ValueError(f"{what}: {dataset.path} holds species {dataset.species}, but the model has {list(species)}")


def _statistics(cfg: Config, train_data, ckpt, start) -> dict:
    """The training-set statistics: the checkpoint's when resuming, else computed (species from the start model)."""
    if ckpt is not None:
        return ckpt["stats"]
    species = cfg.data.species or (start.species if start is not None else None)
    return dataset_statistics(train_data, species=species)


def _start_model(cfg: Config, stats: dict, ckpt, start, log: Callable):
    """The model to train: from the checkpoint, the fine-tuning start, or new from the statistics.

    Shifts given in ``model.shifts`` replace the fine-tuning start's and stay fixed (they are not trained).
    """
    if ckpt is not None:
        stored = ckpt["model"]["config"]
        for key, value in cfg.model.options.items():
            if key in stored and stored[key] != value:
                raise ValueError(f"cannot restart: model.{key} is {value!r} in the config but {stored[key]!r} "
                                 f"in the run's checkpoint")
        model = model_from_payload(ckpt, cfg.run_dir, ema=False)
    elif start is not None:
        shifts = ", ".join(f"{s} {float(v):.3f}" for s, v in zip(start.species, start.scale_shift.shifts.tolist()))
        kept = "weights and scale" if cfg.model.shifts is not None else "weights, scale and per-species shifts"
        log(f"fine-tuning {cfg.to_dict()['model']['init_from']}: its {kept} are the start (its shifts: {shifts} eV)")
        model = start
        if cfg.model.shifts is not None:
            model.scale_shift.set(shifts=_shifts(cfg, {"species": start.species}))
    else:
        options = dict(cfg.model.options)
        options.setdefault("avg_num_neighbors", round(stats["avg_num_neighbors"], 4))
        model = build_model(cfg.model.architecture, species=stats["species"], dtype=cfg.model.dtype,
                            seed=cfg.model.seed, scales=stats["force_rms"], shifts=_shifts(cfg, stats), **options)
    if cfg.model.shifts is not None:
        model.scale_shift.shifts.requires_grad_(False)
    return model


def _shifts(cfg: Config, stats: dict) -> dict:
    """Per-species energy shifts (eV): ``model.shifts`` when given (every species of the model), else least squares."""
    given = cfg.model.shifts
    if given is None:
        return stats["energy_shifts"]
    missing = [s for s in stats["species"] if s not in given]
    extra = [s for s in given if s not in stats["species"]]
    if missing or extra:
        raise ValueError(f"model.shifts: give one value (eV) for each of the model's species {stats['species']}"
                         + (f"; missing {missing}" if missing else "") + (f"; not in the model {extra}" if extra else ""))
    return {s: given[s] for s in stats["species"]}


def _optimizer(model, tc) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    kind = torch.optim.AdamW if tc.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=tc.lr, weight_decay=tc.weight_decay)


def _resume(run: TrainingRun, ckpt: dict) -> None:
    """Optimiser, EMA, schedule and counters from a checkpoint; the run's files made consistent with it.

    Metrics rows after it are dropped, and a best checkpoint that a kill left behind the last one is restored.
    """
    then = ckpt["state"].get("effective_batch_size", ckpt["config"]["training"]["batch_size"])
    now = run.state["effective_batch_size"]
    if then != now:
        raise ValueError(f"cannot restart {run.last_path}: its steps took {then} structures but "
                         f"training.batch_size {run.cfg.training.batch_size} × {run.ranks.world} process(es) is {now}; "
                         f"set training.batch_size to {then} / number of processes")
    if run.ema_model is not None and ckpt.get("ema_state_dict") is not None:
        run.ema_model.load_state_dict(ckpt["ema_state_dict"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.state.update(ckpt["state"])
    run.schedule.load(ckpt["state"]["schedule"])
    if not run.ranks.main:  # the run's files are rank 0's
        return
    _truncate_csv(run.run_dir / "metrics.csv", run.state["epoch"])
    if run.state["best_epoch"] == run.state["epoch"]:
        best_epoch = load_checkpoint(run.best_path)["state"]["epoch"] if run.best_path.exists() else None
        if best_epoch != run.state["epoch"]:
            atomic_copy(run.last_path, run.best_path)
    run.log(f"resumed from {run.last_path} after epoch {run.state['epoch']}")


def _kept(run: TrainingRun) -> str:
    """What a stopped run leaves, for its error message."""
    if run.state["epoch"] == 0:
        return "no epoch had finished, so nothing was saved (a lower training.lr may help)"
    return (f"nothing of this epoch was saved: {run.last_path} holds the last good state (epoch {run.state['epoch']}; "
            "a lower training.lr may help)")


def take_step(run: TrainingRun, batch: Batch, counts: Optional[Dict[str, int]] = None,
              weight: float = 1.0) -> Dict[str, torch.Tensor]:
    """One optimisation step on ``batch``: forward with forces (and stress), loss, backward, update, EMA.

    Under DDP ``batch`` is this rank's share of the step and ``counts`` (``batch_counts``) those of the whole
    step; a rank without a share passes a stand-in structure with ``weight`` 0. The returned loss is the step's.
    """
    tc, ranks = run.cfg.training, run.ranks
    lr = run.schedule.lr(run.state["step"])
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    want_stress = run.cfg.loss.stress_weight > 0 and (bool(batch.has_stress.any()) or run.pinned is not None)
    whole = batch if run.pinned is None else joined(batch, run.pinned.batch)  # one forward pass for both
    out = compute_properties(run.network or run.model, whole.graph, forces=True, stress=want_stress, training=True)
    if want_stress:
        out["stress"] = stress_from_virial(out["virial"], whole)
    out, pinned_out = _split_outputs(out, batch)
    # DDP averages the ranks' gradients: each rank's part of the mean is scaled by the number of ranks
    factors = run.frame_weights.get("train")
    factors = None if factors is None else torch.as_tensor(factors[batch.index.numpy()])
    parts = loss_terms(out, batch, run.cfg.loss, counts, scale=weight * ranks.world, frame_weights=factors)
    if run.pinned is not None:  # every rank evaluates all of them: the ranks' average is the term itself
        parts["pinned"] = run.pinned.loss(pinned_out, run.cfg.loss)
        parts["total"] = parts["total"] + parts["pinned"]
    loss = ranks.total(parts["total"]) / ranks.world
    if not bool(torch.isfinite(loss)):
        raise RuntimeError(f"training stopped: the loss became {loss.item()} at step {run.state['step'] + 1} "
                           f"of epoch {run.state['epoch'] + 1} (learning rate {lr:.3g}); {_kept(run)}")
    run.optimizer.zero_grad(set_to_none=True)
    # gradients for the weights alone: none flows on into the positions and strain (edge harmonics, geometry)
    parts["total"].backward(inputs=[p for p in run.model.parameters() if p.requires_grad])
    if tc.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), tc.grad_clip)
    run.optimizer.step()
    run.state["step"] += 1
    if run.ema_model is not None:
        _update_ema(run.ema_model, run.model, tc.ema_decay, run.state["step"])
    return {"out": {k: v.detach() for k, v in out.items()}, "loss": loss, "lr": lr}


def _split_outputs(out: Dict[str, torch.Tensor], batch: Batch) -> tuple:
    """Outputs on a batch joined with the pinned frames, split into the batch's and the pinned frames'."""
    n_graphs, n_atoms = batch.graph.num_graphs, batch.graph.num_atoms
    per_atom = {"forces", "energies"}
    first = {k: v[:n_atoms] if k in per_atom else v[:n_graphs] for k, v in out.items()}
    rest = {k: v[n_atoms:] if k in per_atom else v[n_graphs:] for k, v in out.items()}
    return first, rest


def step_batches(n: int, batch_size: int, generator: torch.Generator, ranks: Ranks = Ranks()):
    """Each step's structures (dataset positions) in one epoch, and this rank's share of them.

    The order is a permutation drawn from ``generator``; a step takes ``batch_size`` × ranks structures and
    each rank a contiguous part, so the steps do not depend on how many processes share them.
    """
    order = torch.randperm(n, generator=generator).numpy()
    step = batch_size * ranks.world
    for start in range(0, n, step):
        chunk = order[start:start + step]
        yield chunk, shard(chunk, ranks)


def step_on(run: TrainingRun, chunk: np.ndarray, mine: np.ndarray, sizes) -> tuple:
    """``take_step`` on the training structures ``chunk`` (positions in the training set) of which this rank
    evaluates ``mine`` (``step_batches``); ``sizes`` is the set's ``frame_sizes()``. Returns (batch, step)."""
    n_atoms, has_stress = sizes
    counts = {"energy": len(chunk), "forces": 3 * int(n_atoms[chunk].sum()), "stress": 9 * int(has_stress[chunk].sum())}
    dataset = run.data["train"]
    batch = collate([dataset[int(k)] for k in (mine if len(mine) else chunk[:1])]).to(run.device)
    return batch, take_step(run, batch, counts, weight=1.0 if len(mine) else 0.0)


def train_one_epoch(run: TrainingRun, show_progress: bool = True) -> dict:
    """One pass over the shuffled training set (batch order seeded by ``training.seed`` and the epoch)."""
    from tqdm.auto import tqdm

    tc, ranks, dataset = run.cfg.training, run.ranks, run.data["train"]
    epoch = run.state["epoch"] + 1
    t0 = time.time()
    run.model.train()
    generator = torch.Generator().manual_seed(tc.seed * 100_003 + epoch)
    sizes = dataset.frame_sizes()
    acc, loss_sum, n_batches, lr = Accumulator(), 0.0, 0, tc.lr
    bar = tqdm(step_batches(len(dataset), tc.batch_size, generator, ranks), desc=f"epoch {epoch}/{tc.max_epochs}",
               total=run.schedule.steps_per_epoch, disable=not show_progress, leave=False)
    for chunk, mine in bar:
        batch, step = step_on(run, chunk, mine, sizes)
        if len(mine):
            acc.add(batch, step["out"])
        loss_sum += float(step["loss"])
        n_batches += 1
        lr = step["lr"]
        bar.set_postfix(loss=f"{loss_sum / n_batches:.4g}", lr=f"{lr:.2e}")
    bar.close()
    seconds = time.time() - t0
    return {"epoch": epoch, "metrics": error_metrics(_gathered(acc.arrays(), ranks)),
            "loss": loss_sum / max(n_batches, 1), "lr": lr, "structures_per_s": len(dataset) / seconds}


def end_epoch(run: TrainingRun, record: dict, val_m: dict, t_epoch: float) -> None:
    """Schedule and counters after an epoch, then its checkpoints, metrics row and log line."""
    state, epoch = run.state, record["epoch"]
    run.schedule.epoch_end(val_m["loss"])
    state["epoch"] = epoch
    improved = val_m["loss"] < state["best_val_loss"]
    if improved:
        state.update(best_val_loss=val_m["loss"], best_epoch=epoch, bad_epochs=0)
    else:
        state["bad_epochs"] += 1
    state["schedule"] = run.schedule.state()
    train_m = record["metrics"]
    row = {"epoch": epoch, "time_s": round(time.time() - t_epoch, 2), "lr": record["lr"],
           "train_loss": record["loss"], "val_loss": val_m["loss"],
           "structures_per_s": round(record["structures_per_s"], 3)}
    for prefix, m in (("train", train_m), ("val", val_m)):
        for key in ("energy_mae", "energy_rmse", "forces_mae", "forces_rmse", "stress_mae"):
            row[f"{prefix}_{key}"] = m[key]
    if not run.ranks.main:
        return
    # the order makes a kill at any instant harmless: the metrics row first (rows after the last checkpoint are
    # dropped on resume), then checkpoint_last (the commit), then checkpoint_best (a copy of a committed epoch,
    # restored from checkpoint_last on resume if the kill came between the two)
    _append_csv(run.run_dir / "metrics.csv", row)
    args = (run.model, run.ema_model, run.optimizer, state, run.cfg.to_dict(), run.stats,
            {"train": train_m, "val": val_m})
    save_checkpoint(run.last_path, *args)
    if improved:
        save_checkpoint(run.best_path, *args)
    run.log(f"epoch {epoch:4d}  lr {record['lr']:.2e}  loss {row['train_loss']:.4g}/{val_m['loss']:.4g}  "
            f"E {train_m['energy_mae']:.2f}/{val_m['energy_mae']:.2f} meV/atom  "
            f"F {train_m['forces_mae']:.1f}/{val_m['forces_mae']:.1f} meV/Å  "
            f"S {train_m['stress_mae']:.2f}/{val_m['stress_mae']:.2f} meV/Å³  (train/val MAE)  "
            + (f"pinned {val_m['pinned_loss']:.3g}  " if "pinned_loss" in val_m else "")
            + f"{row['structures_per_s']:.2f} structures/s{'  *' if improved else ''}")


# spec options that fine-tuning may change: the ZBL repulsion is fixed physics, not weights
REPULSION_OPTIONS = ("zbl", "zbl_inner", "zbl_outer")


def _initial_model(cfg: Config):
    """The model named by ``model.init_from`` (checkpoint: its EMA weights), checked against the config."""
    path = Path(cfg.model.init_from)
    if not path.is_file():
        raise FileNotFoundError(f"model.init_from: no file {path}")
    model = load_model(path, ema=True)
    if model.spec.architecture != cfg.model.architecture:
        raise ValueError(f"model.init_from: {path} is a {model.spec.architecture} model but model.architecture is "
                         f"{cfg.model.architecture!r}")
    changed = {key: value for key, value in cfg.model.options.items() if model.config.get(key) != value}
    repulsion = {key: changed.pop(key) for key in REPULSION_OPTIONS if key in changed}
    for key, value in changed.items():
        raise ValueError(f"model.init_from: model.{key} is {value!r} in the config but "
                         f"{model.config.get(key)!r} in {path}; drop it from the config")
    if repulsion:  # the ZBL term has no weights: the same network with or without it
        metadata = model.metadata
        state = model.state_dict()
        model = build_model(replace(model.spec, **repulsion), dtype=model.scale_shift.scales.dtype)
        model.load_state_dict(state, strict=True)
        model.metadata = metadata
    return model.to(resolve_dtype(cfg.model.dtype))


def _finish(run: TrainingRun) -> dict:
    """Export the best EMA weights with test metrics; draw the parity plot."""
    cfg, data = run.cfg, run.data
    best = load_checkpoint(run.best_path)
    model = model_from_payload(best, run.best_path, ema=True).to(run.device)
    split = "test" if "test" in data else "val"
    arrays = predict(model, data[split], batch_size=cfg.training.eval_batch_size, device=run.device).arrays()
    m = error_metrics(arrays, per_species=True)
    epoch = best["state"]["epoch"]
    run.log(format_metrics(m, f"{split} split ({len(data[split])} frames), best model (epoch {epoch}):"))
    meta = {"training": {"epoch": epoch, "stats": best["stats"], "validation": best["metrics"]["val"],
                         f"{split}_metrics": m, "config": cfg.to_dict()}}
    model_path = Path(cfg.model_path) if cfg.model_path else run.run_dir / "model.pth"
    save_model(model, model_path, metadata=meta)
    plot = run.run_dir / "parity.png"
    parity_plot(arrays, plot, title=f"{split} split, epoch {epoch}")
    run.log(f"model written to {model_path}; parity plot {plot}")
    return {"model_path": str(model_path), f"{split}_metrics": m, "parity_plot": str(plot)}


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=_CSV_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _truncate_csv(path: Path, last_epoch: int) -> None:
    """Drop rows written after the checkpoint we resume from (and a row a kill cut short), atomically."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if None not in r.values() and int(r["epoch"]) <= last_epoch]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=_CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
