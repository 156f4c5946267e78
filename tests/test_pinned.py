"""Pinned frames (``data.pinned``): fitted at every step, pairs by their differences, checked on reading."""
import re

import numpy as np
import pytest
import torch

from equicalc.data import collate, read_frames
from equicalc.evaluate import stress_from_virial
from equicalc.files import atomic_torch_save
from equicalc.nn.forces import compute_properties
from equicalc.train import config_from_dict, load_config, train
from equicalc.train.checkpoint import load_checkpoint
from equicalc.train.loop import _pinned_outputs, loss_terms, setup, take_step, validate
from equicalc.train.pinned import PinnedFrames
from conftest import training_config, write_emt_data, write_pinned_frames


def test_pairs_are_two_frames_of_the_same_species(tmp_path):
    frames = read_frames(write_pinned_frames(tmp_path / "pinned.extxyz"))
    pinned = PinnedFrames(frames, 4.0, "pinned.extxyz")
    assert pinned.pairs == [(1, 2), (3, 4)] and pinned.singles == [0] and len(pinned) == 5
    frames[0].atoms.info["pair"] = "strain"
    with pytest.raises(ValueError, match=r"pinned.extxyz: pair 'strain' has 3 frame\(s\) \(0, 1, 2\)"):
        PinnedFrames(frames, 4.0, "pinned.extxyz")
    del frames[0].atoms.info["pair"]
    frames[2].atoms.numbers[1] = 79
    with pytest.raises(ValueError, match="frames of pair 'strain' .* do not hold the same species"):
        PinnedFrames(frames, 4.0, "pinned.extxyz")
    with pytest.raises(ValueError, match="no frames"):
        PinnedFrames([], 4.0)


def test_an_offset_common_to_a_pair_is_not_an_error(tmp_path):
    """Outputs equal to the labels plus one offset on every frame: the pairs' errors vanish, the single frame's
    is the offset (energy per atom, each force and stress component)."""
    pinned = PinnedFrames(read_frames(write_pinned_frames(tmp_path / "pinned.extxyz")), 4.0)
    ref = pinned.batch
    n = ref.graph.n_atoms.double()
    out = {"energy": ref.energy + 0.01 * n, "forces": ref.forces + 0.2, "stress": ref.stress + 0.003}
    err = pinned.errors(out)
    assert err["energy"].shape == (3,) and err["forces"].shape == (4 + 8 + 4, 3) and err["stress"].shape == (3, 9)
    np.testing.assert_allclose(err["energy"].numpy(), [0, 0, 0.01], atol=1e-12)
    np.testing.assert_allclose(err["forces"][:12].numpy(), 0, atol=1e-12)
    np.testing.assert_allclose(err["forces"][12:].numpy(), 0.2, atol=1e-12)
    np.testing.assert_allclose(err["stress"].numpy(), [[0] * 9, [0] * 9, [0.003] * 9], atol=1e-12)
    out["stress"] = out["stress"] + torch.arange(5, dtype=torch.float64)[:, None, None]  # differs within a pair
    np.testing.assert_allclose(pinned.errors(out)["stress"][:2, 0].numpy(), [1, 1], atol=1e-12)


@pytest.fixture()
def run_config(tmp_path):
    write_emt_data(tmp_path, 12, 4)
    write_pinned_frames(tmp_path / "pinned.extxyz")
    cfg = training_config(tmp_path, tmp_path / "run")
    cfg.data.pinned = str(tmp_path / "pinned.extxyz")
    cfg.loss.pinned_weight = 30.0
    return cfg


def test_a_step_fits_the_batch_and_the_pinned_frames_in_one_loss(run_config):
    """A step's loss is the batch's loss plus the pinned frames' (as evaluated apart); validation adds the same
    term; training lowers it."""
    cfg = run_config
    run = setup(cfg, restart=False, echo=False)
    assert "pinned frames: 5 (2 pairs fitted by their differences), at every step with the loss weights ×30" in \
        open(f"{cfg.run_dir}/log.txt").read()
    batch = collate([run.data["train"][k] for k in range(4)])
    out = compute_properties(run.model, batch.graph, forces=True, stress=True)
    out["stress"] = stress_from_virial(out["virial"], batch)
    expected = float(loss_terms({k: v.detach() for k, v in out.items()}, batch, cfg.loss)["total"])
    pinned_before = float(run.pinned.loss(_pinned_outputs(run.model, run.pinned), cfg.loss))
    assert pinned_before > 0
    step = take_step(run, batch)
    assert float(step["loss"]) == pytest.approx(expected + pinned_before, rel=1e-10)
    assert step["out"]["energy"].shape == (4,) and step["out"]["forces"].shape == (batch.graph.num_atoms, 3)

    val = validate(run.eval_model, run.data["val"], cfg, run.device, pinned=run.pinned)
    alone = validate(run.eval_model, run.data["val"], cfg, run.device)
    assert val["pinned_loss"] > 0 and val["loss"] == pytest.approx(alone["loss"] + val["pinned_loss"], rel=1e-12)

    cfg.loss.pinned_weight = 1000.0
    train(cfg, show_progress=False, echo=False, overwrite=True, stop_after_epochs=3)
    by_epoch = [float(x) for x in re.findall(r"pinned ([0-9.e+-]+)  ", open(f"{cfg.run_dir}/log.txt").read())]
    assert len(by_epoch) == 3 and by_epoch[-1] < by_epoch[0]
    last = load_checkpoint(f"{cfg.run_dir}/checkpoint_last.pt")["metrics"]["val"]["pinned_loss"]
    assert last == pytest.approx(by_epoch[-1], rel=1e-2)


def test_config_reads_the_pinned_file_beside_it_and_older_runs_resume(run_config, tmp_path):
    """``data.pinned`` is relative to the config file; a run whose checkpoint predates the pinned keys resumes
    when the config leaves them at their defaults."""
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data": {"train": "train.extxyz", "pinned": "pinned.extxyz"},
                                                      "loss": {"pinned_weight": 5}}))
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.data.pinned == str(tmp_path / "pinned.extxyz") and cfg.loss.pinned_weight == 5
    assert cfg.to_dict()["data"]["pinned"] == "pinned.extxyz"
    with pytest.raises(ValueError, match="'loss.pinned_weight' must be >= 0"):
        config_from_dict({"data": {"train": "x"}, "loss": {"pinned_weight": -1}})

    plain = training_config(tmp_path, tmp_path / "old")
    train(plain, show_progress=False, echo=False, stop_after_epochs=1)
    path = tmp_path / "old" / "checkpoint_last.pt"
    ckpt = load_checkpoint(path)
    del ckpt["config"]["data"]["pinned"], ckpt["config"]["loss"]["pinned_weight"]
    atomic_torch_save(ckpt, path)
    assert train(plain, restart=True, show_progress=False, echo=False, stop_after_epochs=1)["epoch"] == 2
    plain.loss.pinned_weight = 2.0
    with pytest.raises(ValueError, match=r"loss.pinned_weight: 1.0 -> 2.0"):
        train(plain, restart=True, show_progress=False, echo=False)
