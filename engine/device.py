"""Device choice, in one place: ``auto`` (CUDA, then Apple MPS, then CPU), ``cpu``, ``cuda``,
``cuda:N`` or ``mps``. A GPU that was asked for but cannot be used falls back to the CPU with a
message saying why, instead of failing the whole job."""

from __future__ import annotations

import ctypes
import os
import re
import sys
from dataclasses import dataclass

import torch

_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class DeviceError(ValueError):
    """The device preference is not one we understand."""


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    note: str = ""  # why we did not use what was asked for, if so


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def choose_device(preference: str = "auto") -> DeviceChoice:
    pref = preference.strip().lower()
    if not _PATTERN.match(pref):
        raise DeviceError(f"unknown device {preference!r}; use auto, cpu, cuda, cuda:N or mps")
    if pref == "cpu":
        return DeviceChoice(_cpu())
    if pref == "auto":
        if torch.cuda.is_available():
            return DeviceChoice(torch.device("cuda:0"))
        if _mps_available():
            return DeviceChoice(torch.device("mps"))
        return DeviceChoice(_cpu())
    if pref == "mps":
        if _mps_available():
            return DeviceChoice(torch.device("mps"))
        return DeviceChoice(_cpu(), "Apple MPS was requested but is not available here; using the CPU")
    index = int(pref.split(":")[1]) if ":" in pref else 0
    if not torch.cuda.is_available():
        return DeviceChoice(_cpu(), f"{pref} was requested but no usable CUDA GPU was found; using the CPU")
    if index >= torch.cuda.device_count():
        return DeviceChoice(_cpu(), f"{pref} was requested but only {torch.cuda.device_count()} CUDA device(s) exist; "
                                    "using the CPU")
    return DeviceChoice(torch.device(f"cuda:{index}"))


def _cpu() -> torch.device:
    """CPU runs use every core the process may use, and flush denormal floats to zero: deep
    InstanceNorm/ReLU stacks produce many, and they slow CPU convolutions by a third or more
    (effect on results: below 1e-37)."""
    torch.set_flush_denormal(True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.get_num_threads() != cores:
        torch.set_num_threads(cores)
    return torch.device("cpu")


@dataclass(frozen=True)
class DeviceInfo:
    name: str  # "cpu", "cuda:0", "mps"
    description: str
    total_bytes: int | None
    free_bytes: int | None


def _meminfo() -> dict[str, int]:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh if line.split()[1:2]}
    except OSError:
        return {}


def ram_bytes() -> tuple[int | None, int | None]:
    """(total, available) system RAM, None where the platform does not say."""
    info = _meminfo()
    if info:
        return info.get("MemTotal"), info.get("MemAvailable", info.get("MemFree"))
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return total, None
    except (ValueError, OSError, AttributeError):
        return None, None


def process_memory_bytes() -> int | None:
    """Memory this process holds right now (Linux: resident memory, less what the C heap keeps
    free for reuse), None where the platform does not say: what a restoration already holds counts
    against its memory budget. Heap memory kept mapped on purpose (``keep_large_buffers_mapped``)
    is free for the next restore, so it does not count."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            resident = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return max(0, resident - _heap_free_bytes())


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (Linux), whose allocator we tune; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
    except (OSError, AttributeError):
        return None
    return libc


def _heap_free_bytes() -> int:
    """Bytes glibc's heap holds free for reuse (0 where it cannot say)."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return 0
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().fordblks)


# glibc returns every buffer of more than 128 KiB-32 MiB (its adaptive threshold) to the system
# when it is freed, and trims the heap above 128 KiB: each restore then maps its working buffers
# afresh and pays a page fault per 4 KiB of them (our HR path took twice the official code's minor
# faults per call). Serving buffers up to 32 MiB from the heap and keeping freed heap mapped
# made repeated restores 1.13x faster with identical output (issue 18's measurement). mallopt takes
# an int, so the trim threshold is 2 GiB (buffers that large are mapped on their own anyway).
MMAP_THRESHOLD_BYTES = 32 * 2**20
TRIM_THRESHOLD_BYTES = 2**31 - 1
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def keep_large_buffers_mapped() -> bool:
    """Tune glibc's allocator so repeated restores reuse their buffers instead of faulting them
    in again (once per process, at start-up; the CLI and the app call it). The equivalent
    environment is ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647``. Returns
    whether the allocator accepted it (False off glibc: nothing to do there)."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def list_devices() -> list[DeviceInfo]:
    """Every device we could run on, with its memory."""
    total, free = ram_bytes()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    devices = [DeviceInfo("cpu", f"CPU ({cores} cores)", total, free)]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            try:
                free_i, total_i = torch.cuda.mem_get_info(i)
            except RuntimeError:
                free_i, total_i = None, torch.cuda.get_device_properties(i).total_memory
            devices.append(DeviceInfo(f"cuda:{i}", torch.cuda.get_device_name(i), total_i, free_i))
    if _mps_available():
        devices.append(DeviceInfo("mps", "Apple GPU (MPS, shares system memory)", total, free))
    return devices


def memory_budget(device: torch.device, max_memory_gb: float | None = None) -> int:
    """Bytes a restoration may use on ``device``: the user's cap, else a safe share of what is free
    (GPU memory on CUDA, RAM otherwise)."""
    if max_memory_gb is not None:
        return int(max_memory_gb * 2**30)
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
            return int(free * 0.8)
        except RuntimeError:
            pass
    total, free = ram_bytes()
    return int((free or total or 8 * 2**30) * 0.6)


PRECISIONS = ("fp32", "bf16", "fp16", "auto", "fast")
# What each precision means, in the words the app's Models tab shows.
PRECISION_LABELS = {
    "fp32": "Exact (float32)",
    "auto": "Automatic (reduced where the hardware computes it natively, else exact)",
    "bf16": "bfloat16 (GPUs, CPUs with AMX/AVX512-BF16; slow where emulated)",
    "fp16": "float16 (GPUs only)",
    "fast": "Fast (int8 convolutions on the CPU, checked against exact at start-up; our default weights)",
}


def describe_runtime(device_preference: str = "auto", precision_preference: str = "fp32") -> str:
    """One line saying what a restore runs on with these preferences: the backend (PyTorch and its
    version), the device with its threads and vector instructions, and the precision actually used,
    or why that precision cannot be used there."""
    choice = choose_device(device_preference)
    device = choice.device
    if device.type == "cpu":
        isa = torch.backends.cpu.get_cpu_capability()
        where = f"CPU, {torch.get_num_threads()} threads, {isa} instructions"
    elif device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    else:
        where = "Apple GPU (MPS)"
    try:
        dtype = choose_precision(device, precision_preference)
        precision = "float32 (exact)" if dtype is None else str(dtype).removeprefix("torch.")
    except DeviceError as exc:
        precision = f"not usable: {exc}"
    return f"PyTorch {torch.__version__.split('+')[0]} on {where}; precision {precision}"


def _cpu_has_native_bf16() -> bool:
    checks = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(check() for check in checks if check is not None)


def choose_precision(device: torch.device, preference: str = "fp32") -> torch.dtype | None:
    """The autocast dtype for inference, or None for exact float32.

    ``auto`` picks bfloat16 where the hardware computes it natively (CUDA Ampere and newer; CPUs
    with AMX or AVX512-BF16), float16 on older CUDA GPUs, and float32 elsewhere (emulated bf16 on a
    plain AVX2 CPU is slower than float32). ``fast`` (int8 convolutions on CPUs, engine.core.fast)
    needs no autocast: None here, the pipeline swaps the networks."""
    if preference not in PRECISIONS:
        raise DeviceError(f"unknown precision {preference!r}; use fp32, bf16, fp16, auto or fast")
    if preference in ("fp32", "fast"):  # fast: float32 autocast; its int8 networks are engine.core.fast's
        return None
    if preference == "bf16":
        return torch.bfloat16
    if preference == "fp16":
        if device.type == "cpu":
            raise DeviceError("fp16 is for GPUs; on the CPU use bf16 or fp32")
        return torch.float16
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float16
    if device.type == "cpu" and _cpu_has_native_bf16():
        return torch.bfloat16
    return None
