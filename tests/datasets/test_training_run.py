"""The catalog datasets that hand training its checkpoint and dvclive folders."""

import pytest
from kedro.io import DataCatalog, DatasetError

from visrec.core.train import CheckpointStore, LiveLog


@pytest.fixture
def catalog(tmp_path):
    return DataCatalog.from_config({
        "checkpoints": {"type": "visrec.datasets.CheckpointDataset",
                        "path": str(tmp_path / "checkpoints")},
        "live": {"type": "visrec.datasets.LiveDataset", "path": str(tmp_path / "dvclive")}})


def test_loading_gives_handles_on_the_folders_without_creating_them(catalog, tmp_path):
    store = catalog["checkpoints"].load()
    live = catalog["live"].load()
    assert isinstance(store, CheckpointStore) and store.folder == tmp_path / "checkpoints"
    assert isinstance(live, LiveLog) and live.folder == tmp_path / "dvclive"
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "dvclive").exists()


def test_the_handles_write_into_the_catalog_folders(catalog, tmp_path):
    catalog["checkpoints"].load().save({"fingerprint": "f", "epoch": 1})
    assert catalog["checkpoints"].load().load("f") == {"fingerprint": "f", "epoch": 1}
    catalog["live"].load()([{"epoch": 1, "phase": "train", "train_loss": 0.5}])
    tsv = (tmp_path / "dvclive/plots/metrics/train_loss.tsv").read_text().split()
    assert tsv == ["step", "train_loss", "0", "0.5"]


@pytest.mark.parametrize("name", ["checkpoints", "live"])
def test_saving_is_refused(catalog, name):
    with pytest.raises(DatasetError, match="written by training as it runs"):
        catalog[name].save({"epoch": 1})
