"""The demo_data pipeline writes a long-tailed digits folder."""

from collections import Counter

from tests.params import base_params
from tests.pipelines.helpers import run_pipeline
from visrec.params import DemoDataParams
from visrec.pipelines.demo_data import create_pipeline


def test_demo_images_are_long_tailed_train_and_balanced_test():
    params = base_params(DemoDataParams, test_per_class=5, largest_class=40,
                         imbalance_ratio=10, image_size=32, seed=0)
    catalog = run_pipeline(create_pipeline(), {"params:demo_data": params})
    images = catalog["demo_images"].load()
    per_split_class = Counter(key.rsplit("/", 1)[0] for key in images)
    assert all(per_split_class[f"test/{d}"] == 5 for d in range(10))
    train = sorted((per_split_class[f"train/{d}"] for d in range(10)), reverse=True)
    assert train[0] == 40
    assert train[-1] == 4
    assert {image.size for image in images.values()} == {(32, 32)}
    assert {image.mode for image in images.values()} == {"L"}
