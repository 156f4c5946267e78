"""Training: YAML config -> checked dataclasses, the training loop split into steps, checkpoints.

    from equicalc.train import load_config, train
    train(load_config("config.yaml"))

Evaluation (predictions, error metrics, parity plots) is inference and lives in
``equicalc.evaluate``.
"""
from .checkpoint import deploy, load_checkpoint
from .config import Config, config_from_dict, config_reference, load_config
from .loop import train

__all__ = ["Config", "load_config", "config_from_dict", "config_reference", "train", "deploy", "load_checkpoint"]
