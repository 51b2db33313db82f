"""``--precision fast``: int8 convolutions on CPUs, through OpenVINO (optional extra ``fast``).

Every convolution of the VAEs and of the mappings' convolutional parts gets int8 per-channel weights
and uint8 inputs whose range was calibrated on our photos (``fast-calibration.json`` next to the
weights, written by ``scripts/calibrate_fast.py``); its output stays float32, so the instance norms,
residual sums, tanh and the scratch mapping's attention run in float32. Convolutions reading or
writing three colour channels (the VAEs' first and last) stay float32: they cost the most accuracy.
On AVX2 CPUs OpenVINO computes these with vpmaddubsw/vpmaddwd (no VNNI needed).

The networks are converted once per loaded weights and mode, then checked against float32 on a
small synthetic photo: below ``SELF_CHECK_PSNR`` dB, or without OpenVINO, without calibration for
these weights, on a GPU or for a tiled restore, the restore runs in exact float32 and the reason is
recorded. Measured speed and PSNR: docs/benchmarks/fast-mode.md.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.core.translation import NETWORKS, Mode, translate
from engine.io.durable import sha256_file
from engine.models.checkpoints import ModelBank
from engine.models.networks.blocks import SharedStatsInstanceNorm

FAST = "fast"
PRECISION_NAME = "int8 (OpenVINO, fast)"
CALIBRATION_FILE = "fast-calibration.json"
SELF_CHECK_PSNR = 40.0
SELF_CHECK_SIDE = 64
# the Sequential parts converted, per network attribute; anything else (attention) stays in PyTorch
PARTS = ("encoder", "decoder", "model", "before_NL", "after_NL")
ROLE_PARTS = (("encoder",), ("model", "before_NL", "after_NL"), ("decoder",))  # encoder, mapping, decoder


class FastUnavailable(Exception):
    """Fast precision cannot be used here; the message says why (the restore runs in float32)."""


def quantized_convs(part: nn.Module) -> list[str]:
    """Names of ``part``'s convolutions that run in int8: all but those reading or writing colour."""
    return [name for name, m in part.named_modules()
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and min(m.in_channels, m.out_channels) > 4]


def network_parts(net: nn.Module, attrs: tuple[str, ...] = PARTS) -> dict[str, nn.Sequential]:
    return {attr: getattr(net, attr) for attr in attrs if isinstance(getattr(net, attr, None), nn.Sequential)}


# --- calibration -------------------------------------------------------------------------------------

def calibrate(bank: ModelBank, images: list[torch.Tensor], masks: list[torch.Tensor] | None = None,
              modes: tuple[Mode, ...] = (Mode.QUALITY, Mode.SCRATCH)) -> dict[str, dict[str, list[float]]]:
    """Input range [min, max] of every int8 convolution, over ``images`` (1,3,H,W in [-1,1]) run
    through each mode's float32 chain: {"network.part": {"conv name": [lo, hi]}}."""
    ranges: dict[str, dict[str, list[float]]] = {}
    hooks = []
    for mode in modes:
        for name in NETWORKS[mode]:
            if bank.missing([name]):
                continue
            for attr, part in network_parts(bank.get(name)).items():
                table = ranges.setdefault(f"{name}.{attr}", {})
                modules = dict(part.named_modules())
                for conv in quantized_convs(part):
                    def observe(_module, args, table=table, conv=conv):
                        lo, hi = torch.aminmax(args[0].detach())
                        old = table.get(conv, [math.inf, -math.inf])
                        table[conv] = [min(old[0], float(lo)), max(old[1], float(hi))]
                    hooks.append(modules[conv].register_forward_pre_hook(observe))
    try:
        for mode in modes:
            if bank.missing(list(NETWORKS[mode])):
                continue
            for i, image in enumerate(images):
                mask = masks[i] if (masks and mode.uses_mask) else (torch.zeros_like(image[:, :1]) if mode.uses_mask else None)
                translate(bank, image, mask, mode)
    finally:
        for hook in hooks:
            hook.remove()
    return ranges


def weights_digest(folder: Path, names: list[str]) -> dict[str, str]:
    """sha256 of each network's weight file: the calibration belongs to exactly these files."""
    return {name: sha256_file(folder / f"{name}.safetensors")
            for name in names if (folder / f"{name}.safetensors").is_file()}


def load_calibration(bank: ModelBank, mode: Mode) -> dict[str, dict[str, list[float]]]:
    """The calibration shipped next to these weights, if it was made for exactly these files."""
    folder = getattr(bank.source, "folder", None)
    path = Path(folder) / CALIBRATION_FILE if folder is not None else None
    if path is None or not path.is_file():
        raise FastUnavailable("fast precision has no calibration for these weights (only Heirloom's default "
                              "weights ship one); running in float32")
    card = json.loads(path.read_text(encoding="utf-8"))
    names = list(NETWORKS[mode])
    digest = weights_digest(Path(folder), names)
    stale = [n for n in names if card.get("files", {}).get(n) != digest.get(n)]
    if stale:
        raise FastUnavailable(f"fast precision's calibration does not match these weights ({', '.join(stale)} "
                              "changed); running in float32")
    return card["ranges"]


# --- conversion ---------------------------------------------------------------------------------------

class _FakeQuantConv(nn.Module):
    """A convolution with uint8 input (calibrated range) and int8 per-channel weights, written as
    fake-quantize nodes that OpenVINO turns into an int8 convolution with float32 output."""

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d, lo: float, hi: float) -> None:
        super().__init__()
        self.conv = conv
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        self.scale = max(hi - lo, 1e-8) / 255.0
        self.zero_point = int(round(-lo / self.scale))
        self.axis = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
        reduce = [d for d in range(conv.weight.dim()) if d != self.axis]
        self.register_buffer("w_scale", (conv.weight.detach().abs().amax(dim=reduce).clamp_min(1e-12) / 127.0).float())
        self.register_buffer("w_zero", torch.zeros(self.w_scale.numel(), dtype=torch.int32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, 0, 255)
        w = torch.fake_quantize_per_channel_affine(self.conv.weight, self.w_scale, self.w_zero, self.axis, -128, 127)
        if isinstance(self.conv, nn.ConvTranspose2d):
            return nn.functional.conv_transpose2d(x, w, self.conv.bias, self.conv.stride, self.conv.padding,
                                                  self.conv.output_padding, self.conv.groups, self.conv.dilation)
        return self.conv._conv_forward(x, w, self.conv.bias)


def _replace(module: nn.Module, fn) -> nn.Module:
    for name, child in list(module.named_children()):
        new = fn(child)
        if new is not None:
            setattr(module, name, new)
        else:
            _replace(child, fn)
    return module


def _plain_norm(m: nn.Module) -> nn.Module | None:
    if isinstance(m, SharedStatsInstanceNorm):
        return nn.InstanceNorm2d(m.num_features, eps=m.eps, affine=False, track_running_stats=False)
    return None


class OpenVinoPart(nn.Module):
    """A Sequential compiled by OpenVINO (any height and width); float32 tensors in and out."""

    def __init__(self, part: nn.Sequential, ranges: dict[str, list[float]], threads: int) -> None:
        super().__init__()
        import openvino as ov

        quant = _replace(copy.deepcopy(part).float().cpu(), _plain_norm)
        modules = dict(quant.named_modules())
        for name in quantized_convs(part):
            parent_name, _, leaf = name.rpartition(".")
            parent = modules[parent_name] if parent_name else quant
            if name not in ranges:
                raise FastUnavailable(f"fast precision's calibration lacks convolution {name}; running in float32")
            setattr(parent, leaf, _FakeQuantConv(modules[name], *ranges[name]))
        channels = next(m.in_channels for m in part.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
        with torch.no_grad():  # a traced module converts about twice as fast as an eager one
            traced = torch.jit.trace(quant.eval(), torch.zeros(1, channels, 32, 32))
            model = ov.convert_model(traced, input=[ov.PartialShape([-1, channels, -1, -1])])
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        self.compiled = ov.Core().compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.request.infer({0: x.detach().float().contiguous().numpy()})[0]
        return torch.from_numpy(np.array(out, copy=True))


class FastBank:
    """A view of a ModelBank whose chain networks for one mode run their convolutional parts in
    OpenVINO int8 (everything else is the bank's own)."""

    def __init__(self, bank: ModelBank, mode: Mode, ranges: dict[str, dict[str, list[float]]]) -> None:
        self.bank, self.source, self.device = bank, bank.source, bank.device
        self._nets: dict[str, nn.Module] = {}
        threads = torch.get_num_threads()
        for name, attrs in zip(NETWORKS[mode], ROLE_PARTS):
            net = copy.copy(bank.get(name))  # shallow: the parts replaced below are the copy's own
            net._modules = dict(net._modules)
            for attr, part in network_parts(net, attrs).items():
                net._modules[attr] = OpenVinoPart(part, ranges.get(f"{name}.{attr}", {}), threads)
            self._nets[name] = net

    def get(self, name: str) -> nn.Module:
        return self._nets.get(name) or self.bank.get(name)

    def missing(self, names: list[str]) -> list[str]:
        return self.bank.missing(names)


# --- self-check and the cached entry point -------------------------------------------------------------

def check_image(side: int = SELF_CHECK_SIDE) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic photo-like test input (gradients, edges, texture) in [-1,1], and a scratch mask."""
    g = torch.Generator().manual_seed(18)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    base = torch.stack([0.6 * xx + 0.2, 0.5 * yy + 0.3 * xx, 0.8 - 0.5 * yy])
    base = base + 0.25 * ((xx - 0.5) ** 2 + (yy - 0.4) ** 2 < 0.05).float()  # a disc: an edge
    image = (base + 0.05 * torch.randn(3, side, side, generator=g)).clamp(0, 1)[None] * 2 - 1
    mask = torch.zeros(1, 1, side, side)
    mask[..., side // 2, :] = 1.0
    return image, mask


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two network outputs in [-1,1], on the [0,1] scale."""
    mse = float(((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-20))


def self_check(bank: ModelBank, fast: FastBank, mode: Mode, minimum: float | None = None) -> float:
    """PSNR of ``fast`` against float32 on the test photo; FastUnavailable below ``minimum``."""
    minimum = SELF_CHECK_PSNR if minimum is None else minimum
    image, mask = check_image()
    mask = mask if mode.uses_mask else None
    exact = translate(bank, image, mask, mode).generated
    reduced = translate(fast, image, mask, mode).generated
    score = psnr(exact, reduced)
    if not score >= minimum:
        raise FastUnavailable(f"fast precision disagreed with float32 in its start-up check ({score:.1f} dB < "
                              f"{minimum:.0f} dB on a {SELF_CHECK_SIDE}x{SELF_CHECK_SIDE} test photo); running in float32")
    return score


def fast_bank(bank: ModelBank, mode: Mode) -> FastBank:
    """The fast networks for ``mode`` (converted and self-checked once per bank and mode), or
    FastUnavailable saying why the restore must run in float32."""
    cache = bank.derived.setdefault(FAST, {})
    if mode not in cache:
        try:
            cache[mode] = _build(bank, mode)
        except FastUnavailable as exc:
            cache[mode] = exc
    if isinstance(cache[mode], FastUnavailable):
        raise cache[mode]
    return cache[mode]


def _build(bank: ModelBank, mode: Mode) -> FastBank:
    if bank.device.type != "cpu":
        raise FastUnavailable("fast precision is for CPUs; on a GPU use bf16 or auto. Running in float32")
    if mode is Mode.HR:
        raise FastUnavailable("fast precision does not cover the HR patch-attention mapping; running in float32")
    try:
        import openvino  # noqa: F401
    except ImportError:
        raise FastUnavailable("fast precision needs OpenVINO (pip install 'heirloom[fast]'), which is not "
                              "installed; running in float32") from None
    fast = FastBank(bank, mode, load_calibration(bank, mode))
    fast.self_check_psnr = self_check(bank, fast, mode)
    return fast
