"""The image-quality measures the GAN reports rest on, against scikit-image's."""

from __future__ import annotations

import numpy as np
import pytest

from engine import metrics
from engine.samples import sample_rgb


def test_psnr_and_ssim_agree_with_scikit_image() -> None:
    sk = pytest.importorskip("skimage.metrics", reason="scikit-image is in the train extra")
    clean = sample_rgb("astronaut")
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    assert metrics.psnr(noisy, clean) == pytest.approx(
        sk.peak_signal_noise_ratio(clean, noisy, data_range=255), abs=1e-9
    )
    want = sk.structural_similarity(
        clean, noisy, channel_axis=2, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255,
    )  # fmt: skip
    assert metrics.ssim(noisy, clean) == pytest.approx(want, abs=5e-3)
    assert metrics.ssim(clean, clean) == pytest.approx(1.0)
    assert metrics.psnr(clean, clean) > 100


def test_edge_sharpness_falls_with_blur() -> None:
    import cv2

    photo = sample_rgb("astronaut")
    edges = cv2.Canny(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), 100, 200) > 0
    sharp = metrics.edge_sharpness(photo, edges)
    soft = metrics.edge_sharpness(cv2.GaussianBlur(photo, (0, 0), 2.0), edges)
    assert soft < 0.7 * sharp
    assert metrics.edge_sharpness(photo, np.zeros_like(edges)) == 0.0
