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
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import torch

from ..data import Batch, GraphDataset, collate, dataset_statistics, frames_by_split
from ..model_io import _dtype, build_model, save_model
from ..nn.forces import compute_properties
from .checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from .config import Config, architecture_options
from .metrics import Accumulator, error_metrics, format_metrics, parity_plot, predict, stress_from_virial

__all__ = ["train", "loss_terms"]

_CSV_FIELDS = [
    "epoch", "time_s", "lr", "train_loss", "val_loss",
    "train_energy_mae", "train_energy_rmse", "train_forces_mae", "train_forces_rmse", "train_stress_mae",
    "val_energy_mae", "val_energy_rmse", "val_forces_mae", "val_forces_rmse", "val_stress_mae",
    "structures_per_s",
]


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("training.device is 'cuda' but CUDA is not available")
    return dev


def loss_terms(out: Dict[str, torch.Tensor], batch: Batch, loss_cfg) -> Dict[str, torch.Tensor]:
    """Weighted loss and its parts for one batch.

    Energy per atom (eV/atom), force components (eV/Å) and stress components
    (eV/Å³, structures with a reference stress only), each averaged, squared
    (``mse``) or Huber, times its weight.
    """
    def term(err):
        if loss_cfg.kind == "huber":
            return torch.nn.functional.huber_loss(err, torch.zeros_like(err), delta=loss_cfg.huber_delta)
        return torch.mean(err ** 2)

    n_atoms = batch.graph.n_atoms.to(out["energy"].device)
    parts = {"energy": term((out["energy"].double() - batch.energy) / n_atoms)}
    total = loss_cfg.energy_weight * parts["energy"]
    if "forces" in out:
        parts["forces"] = term(out["forces"].double() - batch.forces)
        total = total + loss_cfg.forces_weight * parts["forces"]
    if "stress" in out and bool(batch.has_stress.any()):
        parts["stress"] = term((out["stress"].double() - batch.stress)[batch.has_stress])
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


def _evaluate(model, dataset, cfg: Config, device) -> Dict[str, float]:
    acc = predict(model, dataset, batch_size=cfg.training.eval_batch_size, device=device,
                  stress=cfg.loss.stress_weight > 0)
    arrays = acc.arrays()
    m = error_metrics(arrays)
    # the validation loss uses the training loss' form on the whole set (MSE or Huber of the same units)
    e = (arrays["energy_pred"] - arrays["energy_ref"]) / arrays["n_atoms"]
    f = arrays["forces_pred"] - arrays["forces_ref"]
    s = arrays["stress_pred"] - arrays["stress_ref"]
    lc = cfg.loss

    def term(err):
        err = torch.as_tensor(err)
        if err.numel() == 0:
            return 0.0
        if lc.kind == "huber":
            return float(torch.nn.functional.huber_loss(err, torch.zeros_like(err), delta=lc.huber_delta))
        return float(torch.mean(err ** 2))

    m["loss"] = lc.energy_weight * term(e) + lc.forces_weight * term(f) + lc.stress_weight * term(s)
    return m


class _Log:
    def __init__(self, path: Path, echo: bool):
        self.path, self.echo = path, echo

    def __call__(self, msg: str) -> None:
        with open(self.path, "a") as fh:
            fh.write(msg + "\n")
        if self.echo:
            from tqdm.auto import tqdm

            tqdm.write(msg)


def train(cfg: Config, restart: bool = False, show_progress: bool = True, stop_after_epochs: Optional[int] = None,
          echo: bool = True) -> Dict[str, object]:
    """Train a model as ``cfg`` says; returns a summary (paths, epochs, test metrics).

    Args:
        cfg: checked configuration (``load_config``).
        restart: resume from ``<run_dir>/checkpoint_last.pt``.
        show_progress: progress bar over each epoch's batches.
        stop_after_epochs: end this invocation after so many epochs (as if killed
            after a checkpoint); a later ``restart=True`` call continues.
        echo: print the log to the console (it always goes to ``<run_dir>/log.txt``).
    """
    from tqdm.auto import tqdm

    tc = cfg.training
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    device = _resolve_device(tc.device)
    run_dir = Path(cfg.run_dir)
    last_path, best_path = run_dir / "checkpoint_last.pt", run_dir / "checkpoint_best.pt"
    if not restart and last_path.exists():
        raise FileExistsError(f"{run_dir} already holds a training run; resume it with --restart "
                              "or choose another run_dir")
    if restart and not last_path.exists():
        raise FileNotFoundError(f"cannot restart: no checkpoint at {last_path}")
    run_dir.mkdir(parents=True, exist_ok=True)
    log = _Log(run_dir / "log.txt", echo)
    model_path = Path(cfg.model_path) if cfg.model_path else run_dir / "model.pth"

    t_start = time.time()
    dc = cfg.data
    read_kw = dict(energy_key=dc.energy_key, forces_key=dc.forces_key, stress_key=dc.stress_key)
    splits = frames_by_split({"train": dc.train, "val": dc.val, "test": dc.test}, (dc.val_size, dc.test_size),
                             seed=dc.split_seed, **read_kw)
    if not splits["val"]:
        raise ValueError("no validation frames: give data.val or a data.val_size > 0")
    options = dict(cfg.model.options)

    if restart:
        ckpt = load_checkpoint(last_path)
        stored = dict(ckpt["model"]["config"])
        for key, value in options.items():
            if key in stored and stored[key] != value:
                raise ValueError(f"cannot restart: model.{key} is {value!r} in the config but {stored[key]!r} "
                                 f"in {last_path}")
        r_max = stored["r_max"]
    elif cfg.model.init_from:
        start = _initial_model(cfg)
        r_max = start.config["r_max"]
    else:
        r_max = options.get("r_max", architecture_options(cfg.model.architecture)["r_max"].default)
    # neighbour lists are built once here and serve both the statistics and the training
    data = {k: GraphDataset(v, r_max) for k, v in splits.items() if v}
    if restart:
        model = model_from_checkpoint(ckpt, ema=False)
        stats = ckpt["stats"]
    elif cfg.model.init_from:
        stats = dataset_statistics(data["train"], species=dc.species or start.species)
        model = start
        shifts = ", ".join(f"{s} {float(v):.3f}" for s, v in zip(start.species, start.scale_shift.shifts.tolist()))
        log(f"fine-tuning {cfg.to_dict()['model']['init_from']}: its weights, scale and per-species shifts "
            f"({shifts} eV) are the start")
    else:
        stats = dataset_statistics(data["train"], species=dc.species)
        options.setdefault("avg_num_neighbors", round(stats["avg_num_neighbors"], 4))
        model = build_model(cfg.model.architecture, species=stats["species"], dtype=cfg.model.dtype,
                            seed=cfg.model.seed, **options)
        model.scale_shift.set(scales=stats["force_rms"], shifts=stats["energy_shifts"])
    model = model.to(device)
    log(f"frames: {len(splits['train'])} train, {len(splits['val'])} val, {len(splits['test'])} test; "
        f"species {stats['species']}; force RMS {stats['force_rms']:.3f} eV/Å; <n> = {stats['avg_num_neighbors']:.2f} "
        f"within {r_max:g} Å; least-squares per-species shifts of these data leave "
        f"{1e3 * stats['energy_rmse_after_shift']:.1f} meV/atom")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {cfg.model.architecture}, {n_params} parameters, {cfg.model.dtype}, device {device}")

    ema_model = copy.deepcopy(model) if tc.ema_decay is not None else None
    if ema_model is not None:
        for p in ema_model.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    if tc.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    else:
        optimizer = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    steps_per_epoch = math.ceil(len(data["train"]) / tc.batch_size)
    schedule = _Schedule(tc, steps_per_epoch)
    state = {"epoch": 0, "step": 0, "best_val_loss": math.inf, "best_epoch": 0, "bad_epochs": 0}
    if restart:
        if ema_model is not None and ckpt.get("ema_state_dict") is not None:
            ema_model.load_state_dict(ckpt["ema_state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state.update(ckpt["state"])
        schedule.load(ckpt["state"]["schedule"])
        _truncate_csv(run_dir / "metrics.csv", state["epoch"])
        log(f"resumed from {last_path} after epoch {state['epoch']}")
    config_dict = cfg.to_dict()

    eval_model = ema_model if ema_model is not None else model
    stop_reason = "max_epochs"
    epochs_this_run = 0
    epoch_seconds = 0.0
    while state["epoch"] < tc.max_epochs:
        if tc.max_minutes is not None and (time.time() - t_start + epoch_seconds) / 60 > tc.max_minutes:
            stop_reason = "max_minutes"
            break
        if stop_after_epochs is not None and epochs_this_run >= stop_after_epochs:
            stop_reason = "stopped"
            break
        epoch = state["epoch"] + 1
        t_epoch = time.time()
        model.train()
        generator = torch.Generator().manual_seed(tc.seed * 100_003 + epoch)
        loader = torch.utils.data.DataLoader(data["train"], batch_size=tc.batch_size, shuffle=True,
                                             collate_fn=collate, generator=generator)
        acc, loss_sum, n_batches = Accumulator(), 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{tc.max_epochs}", disable=not show_progress, leave=False)
        for batch in bar:
            batch = batch.to(device)
            lr = schedule.lr(state["step"])
            for group in optimizer.param_groups:
                group["lr"] = lr
            want_stress = cfg.loss.stress_weight > 0 and bool(batch.has_stress.any())
            out = compute_properties(model, batch.graph, forces=True, stress=want_stress, training=True)
            if want_stress:
                out["stress"] = stress_from_virial(out["virial"], batch)
            parts = loss_terms(out, batch, cfg.loss)
            optimizer.zero_grad(set_to_none=True)
            parts["total"].backward()
            if tc.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            optimizer.step()
            state["step"] += 1
            if ema_model is not None:
                _update_ema(ema_model, model, tc.ema_decay, state["step"])
            acc.add(batch, {k: v.detach() for k, v in out.items()})
            loss_sum += float(parts["total"].detach())
            n_batches += 1
            bar.set_postfix(loss=f"{loss_sum / n_batches:.4g}", lr=f"{lr:.2e}")
        bar.close()
        train_time = time.time() - t_epoch
        train_m = error_metrics(acc.arrays())
        val_m = _evaluate(eval_model, data["val"], cfg, device)
        schedule.epoch_end(val_m["loss"])
        state["epoch"] = epoch
        improved = val_m["loss"] < state["best_val_loss"]
        if improved:
            state.update(best_val_loss=val_m["loss"], best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        state["schedule"] = schedule.state()
        metrics = {"train": train_m, "val": val_m}
        save_checkpoint(last_path, model, ema_model, optimizer, state, config_dict, stats, metrics)
        if improved:
            save_checkpoint(best_path, model, ema_model, optimizer, state, config_dict, stats, metrics)
        epoch_seconds = time.time() - t_epoch
        row = {"epoch": epoch, "time_s": round(epoch_seconds, 2), "lr": lr, "train_loss": loss_sum / max(n_batches, 1),
               "val_loss": val_m["loss"], "structures_per_s": round(len(data["train"]) / train_time, 3)}
        for prefix, m in (("train", train_m), ("val", val_m)):
            for key in ("energy_mae", "energy_rmse", "forces_mae", "forces_rmse", "stress_mae"):
                row[f"{prefix}_{key}"] = m[key]
        _append_csv(run_dir / "metrics.csv", row)
        log(f"epoch {epoch:4d}  lr {lr:.2e}  loss {row['train_loss']:.4g}/{val_m['loss']:.4g}  "
            f"E {train_m['energy_mae']:.2f}/{val_m['energy_mae']:.2f} meV/atom  "
            f"F {train_m['forces_mae']:.1f}/{val_m['forces_mae']:.1f} meV/Å  "
            f"S {train_m['stress_mae']:.2f}/{val_m['stress_mae']:.2f} meV/Å³  (train/val MAE)  "
            f"{row['structures_per_s']:.2f} structures/s{'  *' if improved else ''}")
        epochs_this_run += 1
        if tc.early_stopping_patience is not None and state["bad_epochs"] >= tc.early_stopping_patience:
            stop_reason = "early_stopping"
            break
        if schedule.floor_reached():
            stop_reason = "min_lr"
            break
    log(f"training stopped ({stop_reason}) after epoch {state['epoch']}; best validation loss at epoch "
        f"{state['best_epoch']}")
    summary = {"stop_reason": stop_reason, "epoch": state["epoch"], "best_epoch": state["best_epoch"],
               "run_dir": str(run_dir)}
    if stop_reason == "stopped" or not best_path.exists():
        return summary
    summary.update(_finish(cfg, best_path, model_path, data, device, log))
    return summary


def _initial_model(cfg: Config):
    """The model named by ``model.init_from`` (checkpoint: its EMA weights), checked against the config."""
    from ..model_io import load_model, read_checked_file
    from .checkpoint import FORMAT_NAME, FORMAT_VERSION

    path = Path(cfg.model.init_from)
    if not path.is_file():
        raise FileNotFoundError(f"model.init_from: no file {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(payload, dict) and payload.get("format") == FORMAT_NAME:
        model = model_from_checkpoint(read_checked_file(path, FORMAT_NAME, FORMAT_VERSION, "checkpoint"), ema=True)
    else:
        model = load_model(path)
    if model.architecture != cfg.model.architecture:
        raise ValueError(f"model.init_from: {path} is a {model.architecture} model but model.architecture is "
                         f"{cfg.model.architecture!r}")
    for key, value in cfg.model.options.items():
        if model.config.get(key) != value:
            raise ValueError(f"model.init_from: model.{key} is {value!r} in the config but "
                             f"{model.config.get(key)!r} in {path}; drop it from the config")
    return model.to(_dtype(cfg.model.dtype))


def _finish(cfg: Config, best_path: Path, model_path: Path, data: dict, device, log: Callable) -> dict:
    """Export the best EMA weights with test metrics; draw the parity plot."""
    best = load_checkpoint(best_path)
    model = model_from_checkpoint(best, ema=True).to(device)
    split = "test" if "test" in data else "val"
    acc = predict(model, data[split], batch_size=cfg.training.eval_batch_size, device=device)
    arrays = acc.arrays()
    m = error_metrics(arrays, per_species=True)
    log(format_metrics(m, f"{split} split ({len(data[split])} frames), best model (epoch {best['state']['epoch']}):"))
    meta = {"training": {"epoch": best["state"]["epoch"], "stats": best["stats"], "validation": best["metrics"]["val"],
                         f"{split}_metrics": m, "config": cfg.to_dict()}}
    save_model(model, model_path, metadata=meta)
    plot = Path(cfg.run_dir) / "parity.png"
    parity_plot(arrays, plot, title=f"{split} split, epoch {best['state']['epoch']}")
    log(f"model written to {model_path}; parity plot {plot}")
    return {"model_path": str(model_path), f"{split}_metrics": m, "parity_plot": str(plot)}


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=_CSV_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _truncate_csv(path: Path, last_epoch: int) -> None:
    """Drop rows written after the checkpoint we resume from."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) <= last_epoch]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=_CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
