"""One descriptor per network (engine.models.registry) and one run policy per restore (engine.core.plan):
the descriptors are the only definition of the networks' multiples, halos and memory factors, and
the policy decides what the scattered pieces decided before, number for number."""

from __future__ import annotations

import re
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import ROOT, bank_for

import engine.core.plan as plan
from engine.core import pipeline
from engine.core.detection import (
    NO_DETECTION,
    detection_short_side,
    network_size,
    parse_detection_scale,
)
from engine.core.pipeline import RestoreOptions, Restorer
from engine.core.plan import ExecutionPlan, parse_tile, plan_restore
from engine.core.translation import Mode, spatial_multiple, tile_specs
from engine.device import DeviceError
from engine.models.registry import BY_NAME, FLOAT32_ONLY, Attention

MIB = 2**20


@pytest.fixture(scope="module")
def restorer() -> Restorer:
    return Restorer(bank_for())


def with_traits(monkeypatch, name: str, **changes) -> None:
    """Give network ``name`` other traits for one test (the registry is read at call time)."""
    spec = BY_NAME[name]
    monkeypatch.setitem(BY_NAME, name, replace(spec, traits=replace(spec.traits, **changes)))


# ------------------------------------------------------------------ the descriptor

def test_no_module_keeps_its_own_copy_of_a_network_fact():
    """SPATIAL_MULTIPLE (vae.py 4, unet.py 16, restoration.py per mode), the detector's halo and the
    working-set factors were literals in several modules; now only the registry states them."""
    names = "SPATIAL_MULTIPLE|DETECTOR_HALO|ENCODER_MAPS|MAPPING_MAPS|DECODER_MAPS"
    copies = re.compile(rf"^[\w ,]*\b({names})\b[^=\n]*=(?!=)", re.M)  # an assignment, also of several names
    offenders = [str(path.relative_to(ROOT)) for folder in ("engine", "gui", "bench", "scripts")
                 for path in (ROOT / folder).rglob("*.py") if copies.search(path.read_text(encoding="utf-8"))]
    assert offenders == []
    assert "SPATIAL_MULTIPLE" not in "".join(p.read_text(encoding="utf-8") for p in (ROOT / "engine").rglob("*.py"))


def test_the_networks_multiples_are_those_the_code_needed_before():
    traits = {name: spec.traits for name, spec in BY_NAME.items()}
    assert (traits["VAE_A_quality"].spatial_multiple, traits["detector"].spatial_multiple) == (4, 16)
    assert traits["mapping_Patch_Attention"].spatial_multiple == 8  # whole 8x8 patches in the latent
    assert {mode: spatial_multiple(mode) for mode in Mode} == {Mode.QUALITY: 4, Mode.SCRATCH: 4, Mode.HR: 32}
    assert traits["mapping_scratch"].attention is Attention.DENSE
    assert traits["mapping_Patch_Attention"].attention is Attention.PATCH
    assert network_size(300, 1000) == (256, 848) and detection_short_side("full", 3000, 2010) == 2016


@pytest.mark.parametrize("mode,expected", [
    # (tile, halo, align, out_scale, bytes per input pixel, feather) as today's tile_specs gave them
    (Mode.QUALITY, [(512, 48, 4, 0.25, 1024, 4), (128, 24, 1, 1.0, 32768, 2), (128, 16, 1, 4, 20480, 4)]),
    (Mode.HR, [(512, 48, 32, 0.25, 1024, 4), (128, 24, 8, 1.0, 32768, 2), (128, 16, 8, 4, 20480, 4)]),
])
def test_tile_specs_read_the_descriptors(restorer, mode, expected):
    specs = tile_specs(restorer.bank, mode, 512)
    assert [(s.tile, s.halo, s.align, s.out_scale, s.bytes_per_pixel, s.feather) for s in specs] == expected


def test_padding_follows_the_descriptor(restorer, monkeypatch):
    """The pipeline pads to the multiple the registry states: change it there and padding follows."""
    seen = []

    def record(bank, x, *args, **kwargs):
        seen.append(tuple(x.shape[-2:]))
        return SimpleNamespace(generated=x)

    monkeypatch.setattr(pipeline, "translate", record)
    mask = np.zeros((37, 53), bool)
    mask[10:12, 5:40] = True
    # the mask is given and final (no detector run: it costs seconds at 256 px and pads nothing)
    options = RestoreOptions(hr=True, tile="off", faces=False, detection_scale=NO_DETECTION)
    restorer.restore(np.full((37, 53, 3), 0.5, np.float32), options, user_mask=mask)
    with_traits(monkeypatch, "mapping_Patch_Attention", spatial_multiple=4)
    restorer.restore(np.full((37, 53, 3), 0.5, np.float32), options, user_mask=mask)
    assert seen == [(64, 64), (48, 64)]


# ------------------------------------------------------------------ the run policy

@pytest.mark.parametrize("options,mode,size,device,expected", [
    # expected (tile, attention window, precision, network budget bytes, over budget), computed with the
    # code before the redesign (Restorer.choose_tile, pipeline.attention_window and network_budget,
    # device.choose_precision) for a process holding 300 MiB
    (RestoreOptions(max_memory_gb=0.25), Mode.QUALITY, (4000, 6000), "cpu", (80, None, None, 256 * MIB, True)),
    (RestoreOptions(max_memory_gb=4), Mode.QUALITY, (4000, 6000), "cpu", (528, None, None, 3200394496, False)),
    (RestoreOptions(max_memory_gb=1000, precision="bf16"), Mode.SCRATCH, (4000, 6000), "cpu",
     (6000, 128, torch.bfloat16, 1072647251200, False)),
    (RestoreOptions(tile=512, max_memory_gb=8), Mode.SCRATCH, (1000, 1000), "cpu",
     (512, None, None, 8242861792, False)),
    (RestoreOptions(tile=512, max_memory_gb=8), Mode.SCRATCH, (2000, 1600), "cpu",
     (512, 128, None, 8171361792, False)),
    (RestoreOptions(tile=4096, max_memory_gb=8), Mode.QUALITY, (1000, 1500), "cpu",
     (None, None, None, 8226611792, False)),
    (RestoreOptions(tile="off", max_memory_gb=0.01), Mode.SCRATCH, (4000, 6000), "cpu", (None, None, None, 256 * MIB, True)),
    # a GPU budget is device memory, untouched by what the process holds; HR's patch attention stays global
    (RestoreOptions(hr=True, max_memory_gb=0.5), Mode.HR, (2048, 2048), "cuda:0", (160, None, None, 512 * MIB, False)),
    (RestoreOptions(max_memory_gb=2, precision="fp16"), Mode.SCRATCH, (3008, 2000), "cuda:0",
     (416, 128, torch.float16, 2048 * MIB, False)),
], ids=["quality-small-limit", "quality-4gb", "scratch-roomy-bf16", "scratch-explicit-tile", "scratch-explicit-windowed",
        "explicit-tile-covers-the-photo", "off", "hr-gpu", "scratch-gpu-fp16"])
def test_the_plan_decides_as_the_scattered_policy_did(restorer, monkeypatch, options, mode, size, device, expected):
    monkeypatch.setattr(plan, "process_memory_bytes", lambda: 300 * MIB)
    got = plan_restore(restorer.bank, options, mode, *size, torch.device(device))
    assert isinstance(got, ExecutionPlan)
    assert (got.tile, got.attention_window, got.precision, got.network_budget, got.over_budget is not None) \
        == expected


def test_the_restore_runs_what_the_plan_says(restorer, monkeypatch):
    """Restorer asks the policy once and runs its tile, budget, window and precision (facts and
    warning in the result)."""
    wanted = ExecutionPlan(tile=64, attention_window=56, precision=torch.bfloat16, network_budget=300 * MIB,
                           over_budget="the plan's warning", attention_rows="holes")
    plans, runs = [], []
    monkeypatch.setattr(pipeline, "plan_restore", lambda *args: plans.append(args[2:]) or wanted)

    def tiled(bank, x, mask, mode, tile, budget, progress, precision, attention_window, attention_rows):
        runs.append((mode, tile, budget, precision, attention_window, attention_rows))
        return x, {"tile": tile, "attention_window": attention_window}

    monkeypatch.setattr(pipeline, "translate_tiled", tiled)
    result = restorer.restore(np.full((96, 128, 3), 0.5, np.float32), RestoreOptions(faces=False))
    assert plans == [(Mode.QUALITY, 96, 128, restorer.device)]
    assert runs == [(Mode.QUALITY, 64, 300 * MIB, torch.bfloat16, 56, "holes")]
    assert result.tiling == {"tile": 64, "attention_window": 56, "network_budget_mib": 300, "precision": "bfloat16",
                             "attention_rows": "holes"}
    assert "the plan's warning" in result.warnings


def test_a_precision_a_network_cannot_run_in_is_refused_before_it_runs(restorer, monkeypatch):
    with_traits(monkeypatch, "mapping_scratch", precisions=FLOAT32_ONLY)
    cpu = torch.device("cpu")
    with pytest.raises(DeviceError, match="mapping_scratch cannot run in bfloat16; use fp32"):
        plan_restore(restorer.bank, RestoreOptions(precision="bf16"), Mode.SCRATCH, 64, 64, cpu)
    assert plan_restore(restorer.bank, RestoreOptions(precision="bf16"), Mode.QUALITY, 64, 64, cpu).precision \
        is torch.bfloat16
    assert plan_restore(restorer.bank, RestoreOptions(), Mode.SCRATCH, 64, 64, cpu).precision is None


# ------------------------------------------------------------------ parsing, one place each

@pytest.mark.parametrize("text,value", [("auto", "auto"), (" Off ", "off"), ("512", 512), (64, 64), ("AUTO", "auto")])
def test_tile_settings_are_read_by_one_parser(text, value):
    assert parse_tile(text) == value
    assert RestoreOptions(tile=text).tile == value  # options hold the typed value


@pytest.mark.parametrize("text", ["huge", "32", "-512", "+512", "", "1e3", 63])
def test_a_bad_tile_setting_says_what_is_accepted(text):
    message = f"the tile size must be auto, off or a number of pixels (at least 64), not {text!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_tile(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        RestoreOptions(tile=text)


@pytest.mark.parametrize("text,value", [("official", "official"), ("FULL", "full"), ("384", 384), (512, 512)])
def test_detection_scales_are_read_by_one_parser(text, value):
    assert parse_detection_scale(text) == value
    assert RestoreOptions(detection_scale=text).detection_scale == value


@pytest.mark.parametrize("text", ["100", "48", "automatic", "half", "", 1000])
def test_a_bad_detection_scale_says_what_is_accepted(text):
    message = ("the detection scale must be official, full, auto, off or a short side in pixels that is a multiple of 16 "
               f"(at least 64), not {text!r}")
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_detection_scale(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        RestoreOptions(detection_scale=text)
    with pytest.raises(ValueError, match=re.escape(message)):
        detection_short_side(text, 300, 400)  # a value that bypassed the options is refused too
