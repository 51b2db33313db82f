"""Image-quality and detection metrics (numpy + OpenCV only; used by benchmarks and tests)."""

from __future__ import annotations

import cv2
import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity (Gaussian window sigma 1.5, K1 0.01, K2 0.03), averaged over channels."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    scores = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]
        blur = lambda im: cv2.GaussianBlur(im, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)  # noqa: E731
        mx, my = blur(x), blur(y)
        sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        scores.append(s[5:-5, 5:-5].mean() if min(s.shape) > 10 else s.mean())
    return float(np.mean(scores))


def detection_scores(prob: np.ndarray, truth: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall, F1 at ``threshold`` and ROC-AUC (rank statistic) over all pixels."""
    prob, truth = np.asarray(prob).ravel(), np.asarray(truth).ravel().astype(bool)
    pred = prob >= threshold
    tp = float(np.sum(pred & truth))
    precision = tp / max(float(pred.sum()), 1.0)
    recall = tp / max(float(truth.sum()), 1.0)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"precision": precision, "recall": recall, "f1": f1, "auc": roc_auc(prob, truth)}


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count half)."""
    pos, neg = int(truth.sum()), int((~truth).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[truth].sum() - pos * (pos + 1) / 2) / (pos * neg))


def seam_score(image: np.ndarray, rows: list[int], cols: list[int]) -> float:
    """Mean absolute gradient across the given tile borders divided by the mean elsewhere
    (1.0 = borders are as smooth as the rest of the picture; a visible seam gives > 1)."""
    img = np.asarray(image, np.float64)
    gy = np.abs(np.diff(img, axis=0)).mean(axis=-1) if img.ndim == 3 else np.abs(np.diff(img, axis=0))
    gx = np.abs(np.diff(img, axis=1)).mean(axis=-1) if img.ndim == 3 else np.abs(np.diff(img, axis=1))
    at_y = np.zeros(gy.shape[0], bool)
    at_y[[r - 1 for r in rows if 0 < r < img.shape[0]]] = True
    at_x = np.zeros(gx.shape[1], bool)
    at_x[[c - 1 for c in cols if 0 < c < img.shape[1]]] = True
    border = np.concatenate([gy[at_y].ravel(), gx[:, at_x].ravel()])
    other = np.concatenate([gy[~at_y].ravel(), gx[:, ~at_x].ravel()])
    return float(border.mean() / max(other.mean(), 1e-12)) if border.size else 1.0


def tolerant_precision_recall(pred: np.ndarray, ref: np.ndarray, tolerance_px: float = 3.0) -> dict[str, float]:
    """Mask agreement that forgives small misplacement (thin scratches drawn by hand are never
    pixel-exact): precision = fraction of predicted pixels within ``tolerance_px`` (Euclidean) of a
    reference pixel, recall = fraction of reference pixels within ``tolerance_px`` of a predicted
    pixel, F1 their harmonic mean. Distances come from ``cv2.distanceTransform`` (exact L2).
    An empty prediction has precision 1 (it claims nothing wrong); an empty reference recall 1."""
    pred, ref = np.asarray(pred).astype(bool), np.asarray(ref).astype(bool)
    if pred.shape != ref.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {ref.shape}")

    def distance_to(mask: np.ndarray) -> np.ndarray:  # distance of every pixel to the nearest True pixel
        if not mask.any():
            return np.full(mask.shape, np.inf, np.float32)
        return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)

    n_pred, n_ref = int(pred.sum()), int(ref.sum())
    precision = float((distance_to(ref)[pred] <= tolerance_px).sum()) / n_pred if n_pred else 1.0
    recall = float((distance_to(pred)[ref] <= tolerance_px).sum()) / n_ref if n_ref else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
