"""Training: YAML config -> checked dataclasses, the training loop, metrics, checkpoints.

    from equicalc.train import load_config, train
    train(load_config("config.yaml"))
"""
from .checkpoint import deploy, load_checkpoint
from .config import Config, config_from_dict, config_reference, load_config
from .loop import train
from .metrics import error_metrics, format_metrics, parity_plot, predict

__all__ = ["Config", "load_config", "config_from_dict", "config_reference", "train", "deploy",
           "load_checkpoint", "predict", "error_metrics", "format_metrics", "parity_plot"]
