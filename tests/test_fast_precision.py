"""--precision fast (engine.core.fast): parsed everywhere precision is, close to float32 on a tiny
random network, and float32 with a recorded reason whenever it cannot be trusted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.cli.app import build_parser
from engine.core import fast
from engine.core.detection import NO_DETECTION
from engine.core.pipeline import Restorer, RestoreOptions
from engine.core.translation import NETWORKS, Mode, translate
from engine.device import PRECISIONS, choose_precision
from engine.models.checkpoints import ModelBank, SafetensorsSource, save_state_dicts
from engine.models.registry import BY_NAME

# int8 on an untrained random network agrees with float32 to about 20 dB (trained weights: 46 dB, see
# docs/benchmarks/fast-mode.md); a broken conversion gives noise (< 10 dB) or fails
RANDOM_NET_DB = 15.0
KWARGS = {"VAE_A_quality": {"channels": 8}, "VAE_B_quality": {"channels": 8}, "VAE_B_scratch": {"channels": 8},
          "mapping_quality": {"width": 32, "blocks": 1, "latent": 8},
          "mapping_scratch": {"width": 32, "blocks": 1, "nl_blocks": 1, "latent": 8}}


def test_fast_is_a_precision_everywhere_precision_is_parsed():
    assert "fast" in PRECISIONS
    assert choose_precision(torch.device("cpu"), "fast") is None  # no autocast: the networks are swapped
    args = build_parser().parse_args(["restore", "photo.jpg", "-o", "out", "--precision", "fast"])
    assert args.precision == "fast"
    assert RestoreOptions(precision="fast").precision == "fast"


def tiny_weights(folder, calibrated: bool = True):
    torch.manual_seed(0)
    save_state_dicts(folder, {name: BY_NAME[name].build(**kw).state_dict() for name, kw in KWARGS.items()})
    (folder / "model.json").write_text(json.dumps({"name": "tiny", "networks": KWARGS}), encoding="utf-8")
    bank = ModelBank(SafetensorsSource(folder), torch.device("cpu"))
    if calibrated:
        g = torch.Generator().manual_seed(1)
        images = [torch.rand(1, 3, 48, 48, generator=g) * 2 - 1 for _ in range(3)] + [fast.check_image(48)[0]]
        card = {"files": fast.weights_digest(folder, list(KWARGS)), "ranges": fast.calibrate(bank, images)}
        (folder / fast.CALIBRATION_FILE).write_text(json.dumps(card), encoding="utf-8")
    return bank


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> ModelBank:
    """One calibrated tiny bank for the tests that pass its self-check at RANDOM_NET_DB: each mode is
    converted once per bank (seconds per network), so the quality conversion the first test makes
    is the one the pipeline test then restores with. A test that needs its own conversion (another
    threshold) makes its own bank."""
    return tiny_weights(tmp_path_factory.mktemp("calibrated"))


@pytest.mark.parametrize("mode", [Mode.QUALITY, Mode.SCRATCH])
def test_fast_networks_are_int8_and_close_to_float32(calibrated, mode, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setattr(fast, "SELF_CHECK_PSNR", RANDOM_NET_DB)
    bank = calibrated
    nets = fast.fast_bank(bank, mode)
    assert nets.self_check_psnr >= RANDOM_NET_DB
    assert fast.fast_bank(bank, mode) is nets  # converted once per bank and mode
    assert isinstance(nets.get(NETWORKS[mode][0]).encoder, fast.OpenVinoPart)
    image, mask = fast.check_image(40)
    mask = mask if mode.uses_mask else None
    exact, reduced = (translate(b, image, mask, mode).generated for b in (bank, nets))
    assert RANDOM_NET_DB <= fast.psnr(exact, reduced) < 100.0  # close, but really reduced (not float32 run twice)


def test_pipeline_records_the_precision_actually_used(calibrated, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setattr(fast, "SELF_CHECK_PSNR", RANDOM_NET_DB)
    restorer = Restorer(calibrated)
    photo = np.random.default_rng(0).random((40, 44, 3), dtype=np.float32)
    result = restorer.restore(photo, RestoreOptions(precision="fast", faces=False, strength=1.0))
    assert result.tiling["precision"] == fast.PRECISION_NAME and not result.warnings
    exact = restorer.restore(photo, RestoreOptions(faces=False, strength=1.0))
    assert exact.tiling["precision"] == "float32"
    assert 10 * np.log10(1 / np.mean((result.image - exact.image) ** 2)) > RANDOM_NET_DB


def test_self_check_that_disagrees_falls_back_to_float32(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setattr(fast, "SELF_CHECK_PSNR", 500.0)  # no int8 network can agree this well
    restorer = Restorer(tiny_weights(tmp_path))
    photo = np.random.default_rng(1).random((32, 32, 3), dtype=np.float32)
    result = restorer.restore(photo, RestoreOptions(precision="fast", faces=False))
    assert result.tiling["precision"] == "float32"
    assert any("disagreed with float32" in w for w in result.warnings)


def test_uncalibrated_weights_or_no_openvino_run_float32_and_say_why(tmp_path, monkeypatch):
    restorer = Restorer(tiny_weights(tmp_path, calibrated=False))
    photo = np.random.default_rng(2).random((32, 32, 3), dtype=np.float32)
    options = RestoreOptions(scratch=True, detection_scale=NO_DETECTION, precision="fast", faces=False)
    result = restorer.restore(photo, options, user_mask=np.zeros((32, 32), bool))
    assert result.tiling["precision"] == "float32"
    assert any("fast precision" in w and "float32" in w for w in result.warnings)
    monkeypatch.setitem(__import__("sys").modules, "openvino", None)  # as if the extra were not installed
    restorer = Restorer(tiny_weights(tmp_path / "b"))
    result = restorer.restore(photo, RestoreOptions(precision="fast", faces=False))
    assert result.tiling["precision"] == "float32"
    assert any("needs OpenVINO" in w for w in result.warnings)
