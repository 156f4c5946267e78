"""A training process for torchrun in the tests, with a fault to inject: ``ddp_worker.py FAULT config.yaml``.

FAULT is ``kill`` (rank 1 dies at the start of epoch 2 on the first attempt, once rank 0 has saved
epoch 1); or ``lr`` (rank 1 reads a config with another learning rate).
"""
import os
import sys
import time
from pathlib import Path

import equicalc.train.loop as loop
from equicalc.train import load_config, train

fault, config = sys.argv[1], sys.argv[2]
rank, attempt = int(os.environ["RANK"]), int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
cfg = load_config(config)
if fault == "kill" and rank == 1 and attempt == 0:
    one_epoch = loop.train_one_epoch

    def dying_epoch(run, show_progress=True):
        if run.state["epoch"] == 1:
            while not (Path(cfg.run_dir) / "checkpoint_last.pt").exists():
                time.sleep(0.05)
            os._exit(1)
        return one_epoch(run, show_progress)

    loop.train_one_epoch = dying_epoch
if fault == "lr" and rank == 1:
    cfg.training.lr *= 2
train(cfg, show_progress=False, echo=False)
