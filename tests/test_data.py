from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from nasden.data.image_sets import (
    BUILTIN_TRAIN,
    BUILTIN_VAL,
    DataConfig,
    DataError,
    PatchSampler,
    RunData,
    evaluation_pairs,
    load_set,
    pad_to_multiple,
)
from nasden.data.images import ImageError, ImageWarning, list_images, load_image, save_image
from nasden.data.noise import NoiseConfig, add_noise, bayer_mask, demosaic, jpeg_round_trip


def test_builtin_split_is_fixed_and_disjoint() -> None:
    train, val = load_set("builtin", 1, "train"), load_set("builtin", 3, "val")
    assert train.names == list(BUILTIN_TRAIN) and val.names == list(BUILTIN_VAL)
    assert not set(train.names) & set(val.names)
    assert all(img.shape[0] == 1 for img in train.clean) and all(img.shape[0] == 3 for img in val.clean)
    assert all(0 <= img.min() and img.max() <= 1 for img in train.clean)


def test_patch_batches_are_deterministic_per_step() -> None:
    sampler = PatchSampler(load_set("builtin", 1), NoiseConfig(sigma=[0, 50]), patch=24, batch=6, seed=3)
    noisy, clean = sampler.batch(7)
    assert noisy.shape == clean.shape == (6, 1, 24, 24)
    again = sampler.batch(7)
    assert torch.equal(noisy, again[0]) and torch.equal(clean, again[1])
    assert not torch.equal(noisy, sampler.batch(8)[0])
    stds = (noisy - clean).flatten(1).std(1) * 255
    assert stds.max() - stds.min() > 5  # blind sigma: drawn per image
    assert stds.max() < 55


def test_noise_levels() -> None:
    g = torch.Generator().manual_seed(0)
    clean = torch.full((4, 1, 64, 64), 0.5)
    residual = add_noise(clean, NoiseConfig(sigma=25), g) - clean
    assert residual.std().item() * 255 == pytest.approx(25, rel=0.03)
    poisson = add_noise(clean, NoiseConfig(kind="poisson_gaussian", sigma=0, peak=20), g) - clean
    assert poisson.var().item() == pytest.approx(0.5 / 20, rel=0.05)  # variance of Poisson(x·peak)/peak
    with pytest.raises(ValueError, match="sigma"):
        NoiseConfig(sigma=[50, 10])


def test_pair_folder_and_case_insensitive_extensions(tmp_path) -> None:
    for sub, value in (("clean", 100), ("noisy", 110)):
        (tmp_path / sub).mkdir()
        Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(tmp_path / sub / "a.JPG", quality=100)
    (tmp_path / "noisy" / "b.png").write_bytes(b"")
    with pytest.warns(ImageWarning, match="b.png has no partner"):
        pairs = load_set(str(tmp_path), 3)
    assert pairs.names == ["a.JPG"] and pairs.noisy is not None
    sampler = PatchSampler(pairs, NoiseConfig(), patch=16, batch=2, seed=0)
    noisy, clean = sampler.batch(0)
    assert (noisy - clean).mean().item() == pytest.approx(10 / 255, abs=2 / 255)


def test_evaluation_pairs_fixed_noise_and_padding() -> None:
    images = load_set("builtin", 1, "val")
    first = evaluation_pairs(images, NoiseConfig(sigma=25), seed=1, limit=2, crop=64)
    second = evaluation_pairs(images, NoiseConfig(sigma=25), seed=1, limit=2, crop=64)
    assert len(first) == 2 and first[0][1].shape == (1, 64, 64)
    assert torch.equal(first[1][1], second[1][1])
    padded, size = pad_to_multiple(torch.rand(1, 1, 30, 33), 8)
    assert padded.shape[-2:] == (32, 40) and size == (30, 33)


def _write(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def test_odd_images_are_converted_with_a_warning(tmp_path) -> None:
    sixteen = _write(tmp_path / "deep.png", (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    with pytest.warns(ImageWarning, match="deep.png.*scaled"):
        img = load_image(sixteen, 1)
    assert img.max() <= 1 and img.max() > 0.9
    rgba = _write(tmp_path / "alpha.png", np.zeros((8, 8, 4), np.uint8))
    with pytest.warns(ImageWarning, match="alpha channel dropped"):
        assert load_image(rgba, 3).shape == (3, 8, 8)
    palette = tmp_path / "palette.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).convert("P").save(palette)
    with pytest.warns(ImageWarning, match="palette"):
        assert load_image(palette, 3).shape == (3, 8, 8)
    gray = _write(tmp_path / "gray.png", np.zeros((8, 8), np.uint8))
    with pytest.warns(ImageWarning, match="gray image replicated"):
        assert load_image(gray, 3).shape == (3, 8, 8)
    with pytest.warns(ImageWarning) as caught:
        assert load_image(rgba, 1).shape == (1, 8, 8)
    assert ["alpha channel dropped" in str(w.message) for w in caught] == [True, False]
    assert "converted to gray" in str(caught[1].message)


def test_bad_files_are_rejected_in_one_line(tmp_path) -> None:
    good = _write(tmp_path / "good.png", np.zeros((64, 64), np.uint8))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "folder.png").mkdir()
    for path, message in ((truncated, "truncated.png: cannot read"), (tmp_path / "text.png", "not an image"),
                          (tmp_path / "folder.png", "is a folder")):
        with pytest.raises(ImageError, match=message) as err:
            load_image(path, 1)
        assert "\n" not in str(err.value)
    assert [p.name for p in list_images(tmp_path)] == ["good.png", "text.png", "truncated.png"]
    with pytest.raises(DataError, match="does not exist"):
        load_set(str(tmp_path / "missing"), 1)


def test_small_images_are_skipped_for_training(tmp_path) -> None:
    _write(tmp_path / "tiny.png", np.zeros((4, 4), np.uint8))
    _write(tmp_path / "big.png", np.zeros((40, 40), np.uint8))
    with pytest.warns(ImageWarning, match="tiny.png.*smaller than the 32-pixel patch"):
        sampler = PatchSampler(load_set(str(tmp_path), 1), NoiseConfig(), patch=32, batch=2, seed=0)
    assert len(sampler.clean) == 1


def test_save_image_is_atomic_and_round_trips(tmp_path) -> None:
    image = torch.rand(3, 16, 16)
    path = save_image(image, tmp_path / "out.png")
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    torch.testing.assert_close(load_image(path, 3), image, atol=1 / 255, rtol=0)


def test_bayer_mosaic_and_bilinear_demosaicing_by_hand() -> None:
    mask = bayer_mask(3, 4, 4)
    assert mask.sum(dim=(1, 2)).tolist() == [4, 8, 4] and mask.sum(0).eq(1).all()  # RGGB: one colour per pixel
    assert mask[:, 0, 0].tolist() == [1, 0, 0] and mask[:, 1, 1].tolist() == [0, 0, 1]
    flat = demosaic(torch.full((1, 3, 8, 8), 0.5), bayer_mask(3, 8, 8))
    assert torch.allclose(flat[..., 2:-2, 2:-2], torch.full((1, 3, 4, 4), 0.5))  # constants survive inside
    impulse = torch.zeros(1, 3, 6, 6)
    impulse[0, 0, 2, 2] = 1.0  # a red sample spreads to its 8 neighbours with weights 1/2 and 1/4
    red = demosaic(impulse, bayer_mask(3, 6, 6))[0, 0]
    assert red[2, 2] == 1 and red[2, 3] == red[1, 2] == 0.5 and red[1, 1] == 0.25 and red[2, 1:4].sum() == 2


def test_camera_noise_is_correlated_and_reproducible() -> None:
    clean = torch.full((2, 3, 64, 64), 0.5)
    camera = NoiseConfig(kind="camera", sigma=1, peak=200)
    first = add_noise(clean, camera, torch.Generator().manual_seed(0))
    assert torch.equal(first, add_noise(clean, camera, torch.Generator().manual_seed(0)))

    def correlations(noisy: torch.Tensor) -> tuple[float, float]:
        """Of the noise between neighbouring pixels, and between the red and green channels."""
        r = (noisy - clean)[..., 1:-1, 1:-1]
        return tuple(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()
                     for a, b in ((r[..., :-1], r[..., 1:]), (r[:, 0], r[:, 1])))

    neighbours, channels = correlations(first)
    assert neighbours > 0.4 and abs(channels) < 0.05  # demosaicing spreads each sample to its neighbours
    compressed = add_noise(clean, NoiseConfig(kind="camera", sigma=1, peak=200, jpeg=[60, 90]),
                           torch.Generator().manual_seed(0))
    assert correlations(compressed)[1] > 0.4  # JPEG's subsampled chroma ties the channels' noise together
    assert (compressed * 255 - (compressed * 255).round()).abs().max() < 1e-4  # 8-bit, as decoded
    assert correlations(add_noise(clean, NoiseConfig(sigma=10), torch.Generator().manual_seed(0)))[0] < 0.05
    quiet = add_noise(clean, NoiseConfig(kind="camera", sigma=0, peak=1e9), torch.Generator().manual_seed(0))
    assert (quiet - clean).abs().max() < 1e-3  # no photons lost: no noise
    assert jpeg_round_trip(torch.full((1, 16, 16), 0.5), 90).sub(128 / 255).abs().max() < 2 / 255
    with pytest.raises(ValueError, match="jpeg: only the camera noise"):
        NoiseConfig(jpeg=90)


def test_pairs_clean_trains_on_the_clean_images_with_synthetic_noise(tmp_path) -> None:
    for sub, value in (("clean", 100), ("noisy", 140)):
        (tmp_path / sub).mkdir()
        Image.fromarray(np.full((32, 32), value, np.uint8)).save(tmp_path / sub / "a.png")
    config = DataConfig(train=str(tmp_path), patch=16, batch=2, noise=NoiseConfig(sigma=0), pairs="clean")
    noisy, clean = RunData(config, 1, seed=0).sampler.batch(0)
    assert torch.equal(noisy, clean)  # σ 0 on the clean images, not the real noisy ones
    noisy, clean = RunData(dataclasses.replace(config, pairs="real"), 1, seed=0).sampler.batch(0)
    assert (noisy - clean).mean().item() == pytest.approx(40 / 255, abs=1 / 255)


def test_validation_is_cropped_and_test_sets_are_whole() -> None:
    data = RunData(DataConfig(val_images=1, val_crop=32), 1, seed=0)
    [(_, noisy, _)] = data.test_set("builtin")
    assert noisy.shape[1:] == (32, 32)
    whole = data.test_set("builtin", validation=False)
    assert len(whole) == len(BUILTIN_VAL) and whole[0][1].shape[1:] == load_set("builtin", 1, "val").clean[0].shape[1:]
