"""Preprocessed data sets (HDF5): the same items and statistics as in memory, the same training, clear errors."""
import numpy as np
import pytest
import torch

from equicalc.cli import main
from equicalc.data import GraphDataset, dataset_statistics, read_frames
from equicalc.preprocessed import PreprocessedDataset, merge_preprocessed, preprocess
from equicalc.train import train
from equicalc.train.checkpoint import load_checkpoint
from conftest import emt_frames, training_config, write_emt_data


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = write_emt_data(tmp_path_factory.mktemp("h5"), 20, 6)
    preprocess(folder / "train.extxyz", folder / "train.h5", r_max=4.0, show_progress=False)
    return folder


def assert_same_item(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if torch.is_tensor(a[key]):
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def test_items_and_statistics_equal_the_in_memory_set(files):
    disk = PreprocessedDataset(files / "train.h5")
    memory = GraphDataset(read_frames(files / "train.extxyz"), 4.0)
    assert len(disk) == len(memory) == 20 and disk.species == ["Cu", "Au"] and disk.r_max == 4.0
    for k in range(len(disk)):
        assert_same_item(disk[k], memory[k])
    a, b = dataset_statistics(disk), dataset_statistics(memory)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == (pytest.approx(b[key], rel=1e-12) if isinstance(a[key], float) else b[key]), key
    part = disk.subset([3, 7])
    assert len(part) == 2
    assert_same_item({**part[1], "index": 7}, memory[7])


def test_merge_repeats_files_in_order(files, tmp_path):
    summary = merge_preprocessed([files / "train.h5"] * 3, tmp_path / "three.h5", show_progress=False)
    assert summary["frames"] == 60
    three, one = PreprocessedDataset(tmp_path / "three.h5"), PreprocessedDataset(files / "train.h5")
    for k in (0, 19, 20, 45, 59):
        assert_same_item({**three[k], "index": k % 20}, one[k % 20])
    assert three.content_sha256 != one.content_sha256


def test_training_from_disk_equals_training_in_memory(files, tmp_path):
    memory = training_config(files, tmp_path / "memory", max_epochs=2)
    disk = training_config(files, tmp_path / "disk", max_epochs=2)
    disk.data.train = str(files / "train.h5")
    train(memory, show_progress=False, echo=False)
    train(disk, show_progress=False, echo=False)
    a = load_checkpoint(tmp_path / "memory" / "checkpoint_last.pt")["model"]["state_dict"]
    b = load_checkpoint(tmp_path / "disk" / "checkpoint_last.pt")["model"]["state_dict"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-12)


def test_validation_split_off_a_preprocessed_file(files, tmp_path):
    cfg = training_config(files, tmp_path / "split", max_epochs=1)
    cfg.data.train, cfg.data.val, cfg.data.val_size = str(files / "train.h5"), None, 5
    summary = train(cfg, show_progress=False, echo=False)
    assert "val_metrics" in summary
    assert "frames: 15 train, 5 val" in (tmp_path / "split" / "log.txt").read_text()


def test_a_file_for_another_cutoff_or_species_is_refused(files, tmp_path):
    cfg = training_config(files, tmp_path / "cut", model={"r_max": 4.5}, max_epochs=1)
    cfg.data.train = str(files / "train.h5")
    with pytest.raises(ValueError, match=r"within 4 Å, not the 4.5 Å of the model; preprocess it again"):
        train(cfg, show_progress=False, echo=False)
    cfg = training_config(files, tmp_path / "species", max_epochs=1)
    cfg.data.train, cfg.data.species = str(files / "train.h5"), ["Au", "Cu"]
    with pytest.raises(ValueError, match=r"preprocessed for species \['Cu', 'Au'\], not the \['Au', 'Cu'\] of the model"):
        train(cfg, show_progress=False, echo=False)
    cfg = training_config(files, tmp_path / "weights", max_epochs=1)
    cfg.data.train, cfg.loss.config_type_weights = str(files / "train.h5"), {"strained": 2.0}
    with pytest.raises(ValueError, match="the train data are a preprocessed file, which keeps no config_type"):
        train(cfg, show_progress=False, echo=False)


def test_preprocess_errors(files, tmp_path):
    with pytest.raises(FileExistsError, match="exists"):
        preprocess(files / "train.extxyz", files / "train.h5", r_max=4.0, show_progress=False)
    with pytest.raises(FileNotFoundError, match="data file not found"):
        preprocess(tmp_path / "missing.extxyz", tmp_path / "x.h5", r_max=4.0)
    with pytest.raises(ValueError, match="frame 0 holds atomic numbers \\[79\\], not among the species Cu"):
        preprocess(files / "train.extxyz", tmp_path / "cu.h5", r_max=4.0, species=["Cu"], show_progress=False)
    assert not (tmp_path / "cu.h5").exists() and not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="is not an HDF5 file"):
        PreprocessedDataset(files / "train.extxyz")
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5.attrs["format"] = "something else"
    with pytest.raises(ValueError, match="not an equicalc preprocessed set"):
        PreprocessedDataset(tmp_path / "other.h5")
    with pytest.raises(ValueError, match="r_max must be > 0"):
        preprocess(files / "train.extxyz", tmp_path / "y.h5", r_max=0.0)


def test_preprocess_cli_reads_the_config(files, tmp_path, capsys):
    import yaml

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data": {"train": str(files / "train.extxyz")}, "model": {"r_max": 3.5}}))
    assert main(["preprocess", str(files / "val.extxyz"), "-o", str(tmp_path / "val.h5"), "--config", str(config),
                 "--quiet"]) == 0
    assert "6 frames" in capsys.readouterr().out
    assert PreprocessedDataset(tmp_path / "val.h5").r_max == 3.5
    assert main(["preprocess", str(files / "val.extxyz"), "-o", str(tmp_path / "v.h5"), "--quiet"]) == 2
    assert "give --r-max" in capsys.readouterr().err
    assert main(["preprocess", str(tmp_path / "val.h5"), str(files / "train.h5"), "-o", str(tmp_path / "all.h5"),
                 "--quiet"]) == 2
    assert "train.h5 holds neighbour lists within 4 Å, not the 3.5 Å of " in capsys.readouterr().err


def test_a_list_of_atoms_and_frames_without_stress(tmp_path):
    frames = emt_frames(3)
    frames[1].pbc = False  # no stress for a non-periodic frame
    frames[1].center(vacuum=3.0)
    preprocess(frames, tmp_path / "mixed.h5", r_max=4.0, show_progress=False)
    data = PreprocessedDataset(tmp_path / "mixed.h5")
    assert [bool(data[k]["has_stress"]) for k in range(3)] == [True, False, True]
    np.testing.assert_allclose(data[2]["forces"].numpy(), frames[2].get_forces())


def test_any_split_may_be_preprocessed(files, tmp_path):
    preprocess(files / "val.extxyz", tmp_path / "val.h5", r_max=4.0, show_progress=False)
    reference = training_config(files, tmp_path / "reference", max_epochs=1)
    train(reference, show_progress=False, echo=False)
    for name, train_file in (("extxyz_train", str(files / "train.extxyz")), ("h5_train", str(files / "train.h5"))):
        cfg = training_config(files, tmp_path / name, max_epochs=1)
        cfg.data.train, cfg.data.val = train_file, str(tmp_path / "val.h5")
        train(cfg, show_progress=False, echo=False)
        a = load_checkpoint(tmp_path / "reference" / "checkpoint_last.pt")
        b = load_checkpoint(tmp_path / name / "checkpoint_last.pt")
        assert b["metrics"]["val"]["loss"] == pytest.approx(a["metrics"]["val"]["loss"], rel=1e-12)
