"""The ingestion pipeline turns a real folder into a manifest and a report."""

from tests.pipelines.helpers import only, run_pipeline
from visrec.core.demo import long_tail_counts
from visrec.core.ingest import MANIFEST_COLUMNS
from visrec.pipelines.ingestion import create_pipeline


def test_manifest_carves_val_from_train_and_keeps_given_test(tiny_params, digits_folder):
    pipeline = create_pipeline()
    (digits_folder / "train" / "3" / "notes.txt").write_text("not an image")
    try:
        catalog = run_pipeline(pipeline, only(tiny_params, pipeline))
    finally:
        (digits_folder / "train" / "3" / "notes.txt").unlink()
    manifest = catalog["image_manifest"].load()
    report = catalog["ingestion_report"].load()
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert report["classes"] == [str(d) for d in range(10)]
    sizes = manifest["split"].value_counts().to_dict()
    assert sizes["test"] == 60  # the given test/ folder, untouched
    assert sizes["val"] > 0
    assert sizes["train"] + sizes["val"] == sum(long_tail_counts(10, 24, 4))
    assert (manifest["class_index"] == manifest["label"].astype(int)).all()
    assert report["skipped"] == [{"path": "train/3/notes.txt", "reason": "not_an_image_extension"}]
