"""Offline face detection with five landmarks (MTCNN cascade, Zhang et al. 2016).

Our own implementation of the three-stage cascade described in the paper:

* P-Net, a 12×12 fully convolutional proposal network run over an image pyramid (scale step
  0.709), giving a face probability and a box regression per 2-pixel cell;
* R-Net, a 24×24 refinement network re-scoring and regressing the surviving (squared) boxes;
* O-Net, a 48×48 output network giving the final score, box regression and five landmarks.

Non-maximum suppression runs after every stage. The weights are the publicly released MTCNN
parameters as shipped (MIT licence) in the ``facenet-pytorch`` wheel's ``data/`` folder. Only the
weight files are read; that package's Python code is never imported (its ``__init__`` pulls in
dependencies pinned to old torch/numpy releases). Install it with::

    python -m pip install --no-deps facenet-pytorch==2.6.0

The networks see a channels-first (N, 3, H, W) RGB image normalised as ``(x - 127.5) / 128``; their
fully connected layers flatten the feature maps in (width, height, channel) order. Both facts were
checked empirically (the alternatives — transposed input, BGR, other flatten orders — misplace or
miss the face on the astronaut image; see ``tests/test_face_detect.py``). "Left" eye/mouth corner
means image-left (smaller x), i.e. the subject's right.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

INSTALL_HINT = "python -m pip install --no-deps facenet-pytorch==2.6.0"


class FaceDetectorUnavailable(RuntimeError):
    """The MTCNN weight files could not be found or loaded."""


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels
    score: float
    # (5, 2) float64 (x, y): left eye centre, right eye centre, nose tip, left mouth corner,
    # right mouth corner ("left" = image-left)
    landmarks: np.ndarray


# --------------------------------------------------------------------------------------------
# Networks (state-dict keys match the released files)
# --------------------------------------------------------------------------------------------


def _flatten_whc(x: torch.Tensor) -> torch.Tensor:
    # The dense layers were trained on (W, H, C)-ordered features of the transposed image.
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class PNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = nn.functional.max_pool2d(x, 2, 2, ceil_mode=True)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return torch.softmax(self.conv4_1(x), dim=1), self.conv4_2(x)


class RNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = nn.PReLU(28)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = nn.PReLU(48)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = nn.functional.max_pool2d(x, 3, 2, ceil_mode=True)
        x = self.prelu2(self.conv2(x))
        x = nn.functional.max_pool2d(x, 3, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_flatten_whc(x)))
        return torch.softmax(self.dense5_1(x), dim=1), self.dense5_2(x)


class ONet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = nn.functional.max_pool2d(x, 3, 2, ceil_mode=True)
        x = self.prelu2(self.conv2(x))
        x = nn.functional.max_pool2d(x, 3, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(x))
        x = nn.functional.max_pool2d(x, 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(_flatten_whc(x)))
        return torch.softmax(self.dense6_1(x), dim=1), self.dense6_2(x), self.dense6_3(x)


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------


def weights_dir() -> Path:
    """The ``data/`` folder of the installed facenet-pytorch wheel, located without importing it."""
    try:
        spec = importlib.util.find_spec("facenet_pytorch")  # top-level: does not execute the package
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        data = Path(loc) / "data"
        if all((data / f"{n}net.pt").is_file() for n in "pro"):
            return data
    raise FaceDetectorUnavailable(
        "MTCNN weights (facenet_pytorch/data/{p,r,o}net.pt) not found; install them with: "
        + INSTALL_HINT
    )


def _load(net: nn.Module, path: Path) -> nn.Module:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    except Exception as exc:  # corrupt or incompatible file
        raise FaceDetectorUnavailable(
            f"cannot load MTCNN weights {path}: {exc}; reinstall them with: {INSTALL_HINT}"
        ) from exc
    return net.eval()


_NETS: tuple[PNet, RNet, ONet] | None = None
_NETS_LOCK = threading.Lock()


def _nets() -> tuple[PNet, RNet, ONet]:
    global _NETS
    with _NETS_LOCK:
        if _NETS is None:
            data = weights_dir()
            _NETS = (
                _load(PNet(), data / "pnet.pt"),
                _load(RNet(), data / "rnet.pt"),
                _load(ONet(), data / "onet.pt"),
            )
        return _NETS


# --------------------------------------------------------------------------------------------
# Box helpers
# --------------------------------------------------------------------------------------------


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8/float RGB → normalised (N, 3, H, W) float32 tensor."""
    x = (images.astype(np.float32) - 127.5) * 0.0078125
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _nms(boxes: np.ndarray, scores: np.ndarray, thresh: float, mode: str = "union") -> np.ndarray:
    """Indices kept by greedy NMS (highest score first; ties broken by index for determinism)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    order = np.lexsort((np.arange(len(scores)), -scores))
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = w * h
        if mode == "min":
            overlap = inter / np.maximum(np.minimum(area[i], area[rest]), 1e-12)
        else:
            overlap = inter / np.maximum(area[i] + area[rest] - inter, 1e-12)
        order = rest[overlap <= thresh]
    return np.asarray(keep, dtype=np.int64)


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    return boxes + reg * np.hstack([w, h, w, h])


def _square(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + (w - side) / 2
    out[:, 1] = boxes[:, 1] + (h - side) / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _crops(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Resize each (integer-rounded, zero-padded outside the image) box to size×size."""
    h, w = image.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), dtype=np.float32)
    for k, b in enumerate(np.round(boxes).astype(np.int64)):
        x0, y0, x1, y1 = b
        if x1 <= x0 or y1 <= y0:
            continue
        patch = np.zeros((y1 - y0, x1 - x0, 3), dtype=np.uint8)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if sx1 > sx0 and sy1 > sy0:
            patch[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out


# --------------------------------------------------------------------------------------------
# Cascade
# --------------------------------------------------------------------------------------------


def _pyramid_scales(h: int, w: int, min_face: float, factor: float) -> list[float]:
    scale = 12.0 / min_face
    side = min(h, w) * scale
    scales = []
    while side >= 12:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


@torch.inference_mode()
def detect_faces(
    image: np.ndarray,
    min_face_size: float = 20.0,
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
    nms_thresholds: tuple[float, float, float] = (0.7, 0.7, 0.7),
    scale_factor: float = 0.709,
) -> list[Face]:
    """Faces in an H×W×3 uint8 RGB image, sorted by score (descending), then box (top-left first).

    Raises FaceDetectorUnavailable when the MTCNN weight files are missing.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8, got {image.dtype}")
    pnet, rnet, onet = _nets()
    h, w = image.shape[:2]

    # Stage 1: P-Net over the pyramid.
    stride, cell = 2.0, 12.0
    all_boxes = []
    for scale in _pyramid_scales(h, w, min_face_size, scale_factor):
        hs, ws = int(np.ceil(h * scale)), int(np.ceil(w * scale))
        resized = cv2.resize(image, (ws, hs), interpolation=cv2.INTER_AREA)
        prob, reg = pnet(_to_tensor(resized[None]))
        prob, reg = prob[0, 1].numpy(), reg[0].numpy()
        ys, xs = np.nonzero(prob > thresholds[0])
        if len(ys) == 0:
            continue
        boxes = np.stack(
            [xs * stride / scale, ys * stride / scale, (xs * stride + cell) / scale, (ys * stride + cell) / scale],
            axis=1,
        )
        scores = prob[ys, xs]
        offsets = reg[:, ys, xs].T
        keep = _nms(boxes, scores, 0.5)
        all_boxes.append(np.hstack([boxes[keep], scores[keep, None], offsets[keep]]))
    if not all_boxes:
        return []
    cand = np.vstack(all_boxes)
    cand = cand[_nms(cand[:, :4], cand[:, 4], nms_thresholds[0])]
    boxes = _square(_regress(cand[:, :4], cand[:, 5:9]))

    # Stage 2: R-Net refinement.
    prob, reg = rnet(_to_tensor(_crops(image, boxes, 24)))
    scores = prob[:, 1].numpy()
    keep = scores > thresholds[1]
    boxes, scores, reg = boxes[keep], scores[keep], reg.numpy()[keep]
    if len(boxes) == 0:
        return []
    keep = _nms(boxes, scores, nms_thresholds[1])
    boxes = _square(_regress(boxes[keep], reg[keep]))

    # Stage 3: O-Net output with landmarks.
    prob, reg, marks = onet(_to_tensor(_crops(image, boxes, 48)))
    scores = prob[:, 1].numpy()
    keep = scores > thresholds[2]
    boxes, scores, reg, marks = boxes[keep], scores[keep], reg.numpy()[keep], marks.numpy()[keep]
    if len(boxes) == 0:
        return []
    bw = (boxes[:, 2] - boxes[:, 0])[:, None]
    bh = (boxes[:, 3] - boxes[:, 1])[:, None]
    lx = boxes[:, 0:1] + marks[:, 0:5] * bw
    ly = boxes[:, 1:2] + marks[:, 5:10] * bh
    boxes = _regress(boxes, reg)
    keep = _nms(boxes, scores, nms_thresholds[2], mode="min")

    faces = [
        Face(
            box=tuple(float(v) for v in boxes[i]),
            score=float(scores[i]),
            landmarks=np.stack([lx[i], ly[i]], axis=1).astype(np.float64),
        )
        for i in keep
    ]
    faces.sort(key=lambda f: (-f.score, f.box[1], f.box[0]))
    return faces
