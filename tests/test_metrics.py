"""PSNR, SSIM, L1 and the grid-energy share against hand values and independent code."""

import jax.numpy as jnp
import numpy as np
import pytest

from cyclegan_jax.evaluation import metrics

C1, C2 = (0.01) ** 2, (0.03) ** 2


def structured_image(shape, seed=0):
  """Smooth gradients plus noise in [0, 1]: some structure for SSIM to see."""
  rng = np.random.default_rng(seed)
  n, h, w, c = shape
  yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing='ij')
  base = 0.5 + 0.3 * np.sin(6 * yy + 4 * xx)[None, ..., None]
  return np.clip(base + 0.1 * rng.standard_normal(shape), 0, 1).astype(np.float32)


def ssim_bruteforce(x, y, size=11, sigma=1.5):
  """Wang et al.'s SSIM written out window by window in float64 (one image [H, W, C])."""
  ax = np.arange(size) - (size - 1) / 2
  g = np.exp(-(ax**2) / (2 * sigma**2))
  win = np.outer(g, g) / np.outer(g, g).sum()
  h, w, c = x.shape
  x, y = x.astype(np.float64), y.astype(np.float64)
  per_channel = []
  for ch in range(c):
    vals = []
    for i in range(h - size + 1):
      for j in range(w - size + 1):
        px, py = x[i : i + size, j : j + size, ch], y[i : i + size, j : j + size, ch]
        mx, my = (win * px).sum(), (win * py).sum()
        vx = (win * (px - mx) ** 2).sum()
        vy = (win * (py - my) ** 2).sum()
        cxy = (win * (px - mx) * (py - my)).sum()
        vals.append(
          ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
        )
    per_channel.append(np.mean(vals))
  return np.mean(per_channel)


def test_l1_and_psnr_hand_values():
  x = np.full((2, 4, 5, 3), 0.25, np.float32)
  y = x.copy()
  y[1] += 0.1  # MSE 0.01 -> 20 dB; the first pair is identical -> the 100 dB cap.
  np.testing.assert_allclose(metrics.l1(x, y), [0.0, 0.1], atol=1e-6)
  np.testing.assert_allclose(metrics.psnr(x, y), [100.0, 20.0], atol=1e-4)
  # Half the pixels off by 0.5: MSE 0.125 -> 10·log10(8) dB.
  z = x.copy()
  z[:, :2] += 0.5
  np.testing.assert_allclose(metrics.psnr(x, z), 10 * np.log10(8) * np.ones(2), rtol=1e-5)


def test_ssim_identical_is_one():
  x = structured_image((2, 24, 20, 3))
  np.testing.assert_allclose(metrics.ssim(x, x), [1.0, 1.0], atol=1e-5)


def test_ssim_of_constant_images_is_the_luminance_term():
  # No variance: SSIM = (2ab + C1) / (a² + b² + C1) (by hand: 0.80006 for 0.5 vs 0.25).
  a, b = 0.5, 0.25
  x = np.full((1, 16, 16, 3), a, np.float32)
  y = np.full((1, 16, 16, 3), b, np.float32)
  expected = (2 * a * b + C1) / (a * a + b * b + C1)
  assert expected == pytest.approx(0.80006, abs=1e-5)
  np.testing.assert_allclose(metrics.ssim(x, y), [expected], rtol=1e-5)


def test_ssim_matches_an_independent_window_by_window_computation():
  x = structured_image((2, 16, 19, 3), seed=1)
  y = np.clip(x + 0.15 * np.random.default_rng(2).standard_normal(x.shape), 0, 1)
  got = np.asarray(metrics.ssim(x, y.astype(np.float32)))
  want = [ssim_bruteforce(x[i], y[i]) for i in range(2)]
  np.testing.assert_allclose(got, want, atol=2e-5)
  assert 0.2 < want[0] < 0.95  # Neither trivial end: the test can tell formulas apart.
  # Symmetric; an inverted image is structurally anti-correlated.
  np.testing.assert_allclose(metrics.ssim(y.astype(np.float32), x), got, atol=1e-5)
  assert float(metrics.ssim(x, 1 - x)[0]) < 0


def test_ssim_of_images_smaller_than_the_window():
  x = structured_image((1, 7, 9, 3))
  np.testing.assert_allclose(metrics.ssim(x, x), [1.0], atol=1e-5)
  assert np.isfinite(metrics.ssim(x, 1 - x)).all()
  with pytest.raises(ValueError, match='one shape'):
    metrics.ssim(x, x[:, :5])


def test_unit_conversions():
  np.testing.assert_allclose(
    metrics.to_unit(np.array([-1.0, 0.0, 1.0, 1.5])), [0.0, 0.5, 1.0, 1.0]
  )
  np.testing.assert_allclose(
    metrics.quantize(np.array([0.5, 0.0021])), [128 / 255, 1 / 255]
  )


def test_grid_energy_share_of_a_pure_checkerboard_is_one():
  yy, xx = np.indices((16, 16))
  board = ((yy + xx) % 2).astype(np.float32)[None, :, :, None]
  stripes4 = ((xx // 2) % 2).astype(np.float32)[None, :, :, None]  # Period 4.
  share = metrics.grid_energy_share(jnp.asarray(np.concatenate([board, stripes4])))
  np.testing.assert_allclose(share, [1.0, 1.0], atol=1e-6)


def test_grid_energy_share_of_noise_is_the_grid_bins_fraction():
  rng = np.random.default_rng(0)
  noise = rng.uniform(size=(64, 32, 32, 3)).astype(np.float32)
  share = float(np.mean(metrics.grid_energy_share(jnp.asarray(noise))))
  assert share == pytest.approx(15 / (32 * 32 - 1), rel=0.15)  # White: flat spectrum.


def test_grid_energy_share_sees_a_faint_checkerboard_on_a_smooth_image():
  yy, xx = np.indices((34, 30))  # Cropped to 32×28.
  smooth = (0.5 + 0.4 * np.sin(yy / 7.0) * np.cos(xx / 9.0))[None, :, :, None]
  board = 0.05 * ((yy + xx) % 2)[None, :, :, None]
  clean, grid = metrics.grid_energy_share(
    jnp.asarray(np.concatenate([smooth, smooth + board]).astype(np.float32))
  )
  assert float(clean) < 0.01 and float(grid) > 3 * float(clean)
