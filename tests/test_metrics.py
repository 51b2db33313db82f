"""Metrics used by the quality benchmark."""

import numpy as np

from engine.core.metrics import detection_scores, psnr, roc_auc, ssim


def test_psnr_and_ssim_behave():
    rng = np.random.default_rng(0)
    img = rng.random((32, 32, 3))
    noisy = np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1)
    noisier = np.clip(img + rng.normal(0, 0.2, img.shape), 0, 1)
    assert abs(psnr(np.full((4, 4), 0.5), np.full((4, 4), 0.6)) - 20.0) < 1e-9
    assert psnr(img, noisy) > psnr(img, noisier)
    assert abs(ssim(img, img) - 1.0) < 1e-9 and ssim(img, noisy) > ssim(img, noisier)


def test_detection_scores():
    truth = np.array([1, 1, 0, 0, 0], bool)
    prob = np.array([0.9, 0.3, 0.5, 0.1, 0.2])
    s = detection_scores(prob, truth, 0.4)
    assert s["precision"] == 0.5 and s["recall"] == 0.5 and abs(s["f1"] - 0.5) < 1e-12
    assert abs(roc_auc(prob, truth) - 5 / 6) < 1e-12
    assert roc_auc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
