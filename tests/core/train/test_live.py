"""dvclive logging of the training history (visrec.core.train.live)."""

import json
import math
import pickle

import pandas as pd
import yaml

from visrec.core.train import LiveLog


def _rows(epochs: int) -> list[dict]:
    return [{"epoch": e, "phase": "train", "train_loss": 1.0 / e, "val_top1": 0.1 * e,
             "note": "text is skipped", "val_loss": math.nan if e == 1 else 0.5}
            for e in range(1, epochs + 1)]


def _tsv(folder, name) -> pd.DataFrame:
    return pd.read_csv(folder / "plots" / "metrics" / f"{name}.tsv", sep="\t")


def test_each_epoch_is_written_once_as_the_history_grows(tmp_path):
    log = LiveLog(tmp_path)
    for epochs in (1, 2, 3):
        log(_rows(epochs))
    loss = _tsv(tmp_path, "train_loss")
    assert loss["step"].tolist() == [0, 1, 2]
    assert loss["train_loss"].tolist() == [1.0, 0.5, 1 / 3]
    assert _tsv(tmp_path, "val_loss")["step"].tolist() == [1, 2]  # NaN is not logged
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == {"train_loss": 1 / 3, "val_top1": 0.30000000000000004, "val_loss": 0.5,
                       "step": 2}


def test_a_resumed_run_rewrites_the_folder_as_an_unbroken_one(tmp_path):
    unbroken, resumed = tmp_path / "unbroken", tmp_path / "resumed"
    log = LiveLog(unbroken)
    for epochs in (1, 2, 3):
        log(_rows(epochs))
    first = LiveLog(resumed)
    for epochs in (1, 2):
        first(_rows(epochs))
    LiveLog(resumed)(_rows(3))  # a new process after a crash gets the whole history
    for name in ("train_loss", "val_top1", "val_loss"):
        pd.testing.assert_frame_equal(_tsv(resumed, name), _tsv(unbroken, name))


def test_a_pickled_logger_starts_its_own_run(tmp_path):
    log = LiveLog(tmp_path)
    log(_rows(2))
    copy = pickle.loads(pickle.dumps(log))
    assert copy.folder == tmp_path and copy._live is None


def test_the_run_parameters_go_to_params_yaml_and_survive_pickling(tmp_path):
    recorded = {"augmentation": "flip_crop(scale=(0.5, 1)) + randaugment(n=2, m=9)",
                "epochs": 3, "lr": 0.2}
    log = pickle.loads(pickle.dumps(LiveLog(tmp_path).with_params(recorded)))
    log(_rows(1))
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == recorded
    LiveLog(tmp_path / "plain")(_rows(1))
    assert not (tmp_path / "plain" / "params.yaml").exists()
