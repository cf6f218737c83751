"""ImageNet-C corruptions as registered perturbations: all 19 run on a real photo, seeded per sample."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from core.data import LocalDataset, write_dataset
from perturbations import PERTURBATIONS, get_perturbation
from perturbations.cache import ensure_variant
from perturbations.corruptions import CORRUPTIONS, SEVERITIES, Corruption

NOISE = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(data.astronaut()).resize((64, 48), Image.Resampling.BILINEAR)


def test_names_match_corrupt_tta_and_all_severities_are_registered():
    from corrupt_tta import corruption_dict

    assert set(CORRUPTIONS) == set(corruption_dict) and len(CORRUPTIONS) == 19
    for c in CORRUPTIONS:
        for s in SEVERITIES:
            p = get_perturbation(f"{c}-{s}")
            assert isinstance(p, Corruption) and p.datatype == "image" and p.description and p.method
            assert p.identity() == {"name": f"{c}-{s}", "version": 1, "params": {"corruption": c, "severity": s}}
    assert sum(isinstance(p, Corruption) for p in PERTURBATIONS) == 95


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_severity_3_is_uint8_same_size_and_reproducible(photo, corruption):
    p = get_perturbation(f"{corruption}-3")
    out = p(photo, seed=7, index=3)
    arr = np.asarray(out)
    assert out.mode == "RGB" and out.size == photo.size and arr.dtype == np.uint8
    assert not np.array_equal(arr, np.asarray(photo)), "the corruption changed nothing"
    np.testing.assert_array_equal(np.asarray(p(photo, seed=7, index=3)), arr)
    if corruption in NOISE:
        assert not np.array_equal(np.asarray(p(photo, seed=7, index=4)), arr)
        assert not np.array_equal(np.asarray(p(photo, seed=8, index=3)), arr)


def test_global_numpy_generator_is_left_as_it_was(photo):
    np.random.seed(123)
    expected = np.random.random(3)
    np.random.seed(123)
    get_perturbation("gaussian_noise-1")(photo, seed=0, index=0)
    np.testing.assert_array_equal(np.random.random(3), expected)


def test_greyscale_input_and_bad_parameters(photo):
    out = get_perturbation("contrast-2")(photo.convert("L"), seed=0, index=0)
    assert out.mode == "RGB" and out.size == photo.size
    with pytest.raises(ValueError, match="unknown corruption"):
        Corruption("rain", 1)
    with pytest.raises(ValueError, match="severity"):
        Corruption("fog", 6)


def test_variant_cache_builds_the_same_corrupted_images_twice(tmp_path, photo):
    (tmp_path / "src" / "img").mkdir(parents=True)
    rows = []
    for i in range(3):
        photo.rotate(90 * i).save(tmp_path / "src" / "img" / f"{i}.png")
        rows.append({"id": f"s{i}", "label": i % 2, "file": f"img/{i}.png"})
    write_dataset(tmp_path / "src", {"name": "photos", "datatype": "image", "classes": ["a", "b"]}, {"test": rows})
    ds = LocalDataset.open(tmp_path / "src")
    p = get_perturbation("shot_noise-2")
    built = [ensure_variant(ds, ds.revision(), p, seed=1, cache_root=tmp_path / f"cache{k}") for k in range(2)]
    assert built[0].root.name.startswith("shot_noise-2-")
    for i, (src, a, b) in enumerate(zip(ds.samples("test"), built[0].samples("test"), built[1].samples("test"))):
        expected = np.asarray(p(src.input, 1, index=i))
        np.testing.assert_array_equal(np.asarray(a.input), expected)
        np.testing.assert_array_equal(np.asarray(b.input), expected)


def test_a_corruption_is_a_variant_of_a_real_cycle(demo_home, mongo_uri, db_name, tmp_path, monkeypatch):
    """resnet-digits evaluated on two corrupted variants of digits through the Executor: results stored with
    the variant's name, version and parameters; the strongest contrast reduction costs accuracy."""
    import processors.classification  # noqa: F401
    from core.store import Store
    from modules.hf import HFImageClassification
    from pipeline.executor import Executor
    from scraper.datasets import register_datasets
    from scraper.local import scrape_local

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    store = Store(mongo_uri, db_name)
    register_datasets(store, demo_home / "datasets", log=lambda *a: None)
    scrape_local(store, demo_home / "zoo", log=lambda *a: None)
    module = HFImageClassification(dataset="digits", variants=("original", "gaussian_noise-1", "contrast-5"))
    Executor(store, [module], tmp_path, batch_size=64, progress=False, echo=lambda s: None).run({"name": "demo/resnet-digits"})
    res = {r["variant"]: r for r in store.iter_results({"model_name": "demo/resnet-digits"})}
    assert sorted(res) == ["contrast-5", "gaussian_noise-1", "original"]
    for name in ("contrast-5", "gaussian_noise-1"):
        corruption, severity = name.rsplit("-", 1)
        assert res[name]["variant_version"] == get_perturbation(name).version
        assert res[name]["variant_params"] == {"corruption": corruption, "severity": int(severity)}
        assert res[name]["overall"]["n"] == res["original"]["overall"]["n"]
    assert res["contrast-5"]["overall"]["accuracy"] < res["original"]["overall"]["accuracy"]
    store.close()
