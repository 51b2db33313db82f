"""Mixed precision for training on CUDA (``train ... --amp bf16|fp16``).

Only the networks' forward passes run under ``torch.autocast`` (``MixedPrecision.run``), and their
outputs come back as float32: losses, metrics, the detector's weight average, parameters,
optimiser state and checkpoints all stay float32, so a run can switch precision on resume and
exported weights are the same kind either way. float16 needs loss scaling (its range is small);
each optimiser gets its own ``GradScaler``, whose state is checkpointed so a resumed fp16 run
scales as the uninterrupted one would have. bfloat16 has float32's range and needs none.

The CPU is refused rather than silently ignored: on CPUs without native bfloat16 it is slower
than float32, and fp16 autocast is a GPU feature.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

AMP_MODES = ("off", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def to_float32(value: Any) -> Any:
    """Tensors (also inside lists and tuples) as float32; anything else unchanged."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(to_float32(v) for v in value)
    return value


def check_mode(device: torch.device, mode: str) -> None:
    """Raise ValueError, saying what to use instead, unless ``mode`` can train on ``device``."""
    if mode not in AMP_MODES:
        raise ValueError(f"unknown precision {mode!r}; use {', '.join(AMP_MODES)}")
    if mode != "off" and device.type != "cuda":
        raise ValueError(f"--amp {mode} is for CUDA devices; on {device.type} training runs in float32 "
                         "(leave out --amp)")
    if mode == "bf16" and not torch.cuda.is_bf16_supported():
        raise ValueError("this GPU has no bfloat16; use --amp fp16")


class MixedPrecision:
    """A trainer's precision policy: ``run`` for network calls, ``optimise`` for updates."""

    def __init__(self, device: torch.device, mode: str = "off") -> None:
        check_mode(device, mode)
        self.device, self.mode = device, mode
        self.dtype = _DTYPES.get(mode)
        self.scalers: dict[str, torch.amp.GradScaler] = {}

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` (a network or one of its methods) under autocast, outputs as float32."""
        if self.dtype is None:
            return fn(*args)
        with torch.autocast(self.device.type, dtype=self.dtype):
            out = fn(*args)
        return to_float32(out)

    def scaler(self, name: str) -> torch.amp.GradScaler:
        if name not in self.scalers:
            self.scalers[name] = torch.amp.GradScaler(self.device.type)
        return self.scalers[name]

    def optimise(self, name: str, optim: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """One update of optimiser ``name`` from ``loss`` (zero grads, backward, step)."""
        optim.zero_grad(set_to_none=True)
        if self.mode != "fp16":
            loss.backward()
            optim.step()
            return
        scaler = self.scaler(name)
        scaler.scale(loss).backward()
        scaler.step(optim)  # skipped when the scaled gradients overflowed
        scaler.update()

    def state_dict(self) -> dict[str, dict]:
        return {name: s.state_dict() for name, s in self.scalers.items()}

    def load_state_dict(self, state: dict[str, dict]) -> None:
        """Restore loss scales from a checkpoint (ignored unless this run uses fp16)."""
        if self.mode != "fp16":
            return
        for name, scaler_state in state.items():
            self.scaler(name).load_state_dict(scaler_state)
