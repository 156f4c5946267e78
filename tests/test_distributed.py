"""Training under DistributedDataParallel: torchrun with 2 CPU processes (gloo) against one process.

N processes with batch b each must take the very steps of one process with batch N·b: the same weights,
EMA, learning rates, validation losses and stopping epoch (float64, to 1e-9).
"""
import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from equicalc.train import load_config, train
from equicalc.train.checkpoint import load_checkpoint
from conftest import write_emt_data, write_pinned_frames

pytestmark = pytest.mark.slow
WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = write_emt_data(tmp_path_factory.mktemp("ddp"), 39, 8)  # 39: the last step does not split evenly
    from equicalc.preprocessed import preprocess

    preprocess(folder / "train.extxyz", folder / "train.h5", r_max=4.0, show_progress=False)
    write_pinned_frames(folder / "pinned.extxyz")
    return folder


def write_config(folder, name, train_file="train.extxyz", pinned=False, **training):
    raw = {
        "run_dir": str(folder / name),
        "data": {"train": train_file, "val": "val.extxyz", **({"pinned": "pinned.extxyz"} if pinned else {})},
        "model": {"r_max": 4.0, "l_max": 1, "num_layers": 2, "num_features": 8, "num_basis": 6,
                  "radial_hidden": 16, "dtype": "float64"},
        "loss": {"energy_weight": 10.0, "forces_weight": 1.0, "stress_weight": 10.0},
        "training": {"max_epochs": 3, "lr": 0.01, "num_threads": 1, "scheduler": "cosine", "warmup_epochs": 1,
                     "min_lr": 1e-3, **training},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def torchrun(config, fault="none", nproc=2, restarts=0):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "--max-restarts", str(restarts), "--monitor-interval", "0.1"]
    # without a fault, the command users run: torchrun -m equicalc train config.yaml
    cmd += ["-m", "equicalc", "train", str(config), "--quiet"] if fault == "none" else [str(WORKER), fault, str(config)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    finally:  # torchrun and every process it started
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_state(run_dir):
    ckpt = load_checkpoint(Path(run_dir) / "checkpoint_last.pt")
    with open(Path(run_dir) / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    return ckpt, rows


def assert_same_run(a, b, tol=1e-9):
    (ca, ra), (cb, rb) = run_state(a), run_state(b)
    assert ca["state"]["epoch"] == cb["state"]["epoch"] and ca["state"]["step"] == cb["state"]["step"]
    for weights in (("model", "state_dict"), ("ema_state_dict",)):
        wa, wb = ca, cb
        for key in weights:
            wa, wb = wa[key], wb[key]
        for name in wa:
            np.testing.assert_allclose(wa[name].numpy(), wb[name].numpy(), rtol=0, atol=tol, err_msg=name)
    assert len(ra) == len(rb)
    for x, y in zip(ra, rb):
        for key in ("lr", "train_loss", "val_loss", "val_forces_mae", "train_forces_mae"):
            assert float(x[key]) == pytest.approx(float(y[key]), rel=tol), key


# 19: one process has no share of the last step, and both evaluate the pinned frames at every step
@pytest.mark.parametrize("per_process", [3, 19])
def test_two_processes_take_the_steps_of_one_with_twice_the_batch(data, per_process):
    pinned = per_process == 19
    one = write_config(data, f"one_{per_process}", batch_size=2 * per_process, pinned=pinned)
    train(load_config(one), show_progress=False, echo=False)
    two = write_config(data, f"two_{per_process}", batch_size=per_process, pinned=pinned)
    done = torchrun(two)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(data / f"one_{per_process}", data / f"two_{per_process}")
    log = (data / f"two_{per_process}" / "log.txt").read_text()
    assert "DistributedDataParallel over 2 processes (gloo)" in log and (data / f"two_{per_process}" / "model.pth").exists()


def test_early_stopping_and_plateau_schedule_agree_and_data_may_come_from_disk(data):
    common = dict(scheduler="plateau", plateau_patience=0, plateau_factor=0.5, lr=0.05, early_stopping_patience=1,
                  max_epochs=6, warmup_epochs=0)
    one = write_config(data, "one_plateau", batch_size=8, **common)
    summary = train(load_config(one), show_progress=False, echo=False)
    two = write_config(data, "two_plateau", train_file="train.h5", batch_size=4, **common)
    done = torchrun(two)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(data / "one_plateau", data / "two_plateau")
    assert f"training stopped ({summary['stop_reason']})" in (data / "two_plateau" / "log.txt").read_text()


def test_a_killed_process_is_restarted_and_the_run_resumes(data):
    whole = write_config(data, "whole", batch_size=6)
    train(load_config(whole), show_progress=False, echo=False)
    killed = write_config(data, "killed", batch_size=3)
    done = torchrun(killed, fault="kill", restarts=1)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in (data / "killed" / "log.txt").read_text()
    assert_same_run(data / "whole", data / "killed")


def test_restart_with_another_number_of_processes_keeps_the_step(data):
    first = write_config(data, "ranks", batch_size=3, max_epochs=1)
    done = torchrun(first)
    assert done.returncode == 0, done.stderr[-3000:]
    cfg = load_config(write_config(data, "ranks", batch_size=6))  # one process now: twice the batch
    train(cfg, restart=True, show_progress=False, echo=False)
    train(load_config(write_config(data, "ranks_whole", batch_size=6)), show_progress=False, echo=False)
    assert_same_run(data / "ranks_whole", data / "ranks")
    cfg = load_config(write_config(data, "ranks", batch_size=3, max_epochs=4))
    with pytest.raises(ValueError, match=r"its steps took 6 structures but training.batch_size 3 × 1"):
        train(cfg, restart=True, show_progress=False, echo=False)


def test_processes_started_with_different_configs_stop_with_a_message(data):
    cfg = write_config(data, "mismatch", batch_size=3)
    done = torchrun(cfg, fault="lr")
    assert done.returncode != 0
    assert "rank 1 differs from rank 0 in training.lr" in done.stderr + done.stdout
    assert not (data / "mismatch" / "checkpoint_last.pt").exists()
