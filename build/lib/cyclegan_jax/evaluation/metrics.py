"""Image quality metrics as pure jnp functions: L1, PSNR and SSIM, one value per image.

Every function takes NHWC batches and returns one value per image ([N]), so a caller
can average over a test set without weighting images by their size. PSNR and SSIM take
images in [0, 1] (`to_unit` maps the networks' [-1, 1] into it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to
# structural similarity", IEEE TIP 2004: an 11x11 Gaussian window of sigma 1.5,
# K1 = 0.01, K2 = 0.03, dynamic range L.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
# A perfect match has infinite PSNR; the MSE floor keeps the mean (and JSON) finite.
PSNR_MAX_DB = 100.0


def to_unit(images: jax.Array) -> jax.Array:
  """[-1, 1] network images to [0, 1], clipped."""
  return jnp.clip((images + 1.0) * 0.5, 0.0, 1.0)


def quantize(images: jax.Array) -> jax.Array:
  """[0, 1] images rounded to 8-bit levels: the values a saved PNG holds."""
  return jnp.round(images * 255.0) / 255.0


def l1(x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean absolute difference per image: [N, H, W, C] x2 -> [N]."""
  return jnp.mean(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)), axis=(1, 2, 3))


def psnr(x: jax.Array, y: jax.Array, data_range: float = 1.0) -> jax.Array:
  """Peak signal-to-noise ratio in dB per image, 10·log10(L² / MSE), capped at 100 dB."""
  mse = jnp.mean(
    jnp.square(x.astype(jnp.float32) - y.astype(jnp.float32)), axis=(1, 2, 3)
  )
  floor = data_range**2 * 10.0 ** (-PSNR_MAX_DB / 10.0)
  return 10.0 * jnp.log10(data_range**2 / jnp.maximum(mse, floor))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> jax.Array:
  """The normalised 1-D Gaussian whose outer product is SSIM's 2-D window."""
  x = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2.0
  g = jnp.exp(-(x**2) / (2.0 * sigma**2))
  return g / jnp.sum(g)


def _filter_valid(x: jax.Array, window: jax.Array) -> jax.Array:
  """Separable Gaussian filtering of each channel, 'valid' region only.

  Wang et al.'s reference code (`filter2(..., 'valid')`) averages the SSIM map over the
  positions where the window lies inside the image; so does this.
  """
  n, h, w, c = x.shape
  k = window.shape[0]
  # Channels folded into the batch: one single-channel conv filters all of them.
  x = jnp.transpose(x, (0, 3, 1, 2)).reshape(n * c, h, w, 1)
  dims = ('NHWC', 'HWIO', 'NHWC')
  # HIGHEST: TF32 on GPUs would cost SSIM its third decimal.
  precision = jax.lax.Precision.HIGHEST
  x = jax.lax.conv_general_dilated(
    x,
    window.reshape(k, 1, 1, 1),
    (1, 1),
    'VALID',
    dimension_numbers=dims,
    precision=precision,
  )
  x = jax.lax.conv_general_dilated(
    x,
    window.reshape(1, k, 1, 1),
    (1, 1),
    'VALID',
    dimension_numbers=dims,
    precision=precision,
  )
  return jnp.transpose(x.reshape(n, c, h - k + 1, w - k + 1), (0, 2, 3, 1))


def ssim(
  x: jax.Array,
  y: jax.Array,
  data_range: float = 1.0,
  window_size: int = SSIM_WINDOW,
  sigma: float = SSIM_SIGMA,
) -> jax.Array:
  """Structural similarity (Wang et al. 2004) per image: [N, H, W, C] x2 -> [N].

  Gaussian-weighted local means, variances and covariance (population form) over an
  11x11 window of sigma 1.5, C1 = (0.01 L)², C2 = (0.03 L)²; the SSIM map is averaged
  over the valid positions of each channel, then over channels. This is
  `skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=L, channel_axis=-1)`. Images smaller than
  the window use a window of their smaller side (made odd) instead.

  Args:
    x: images in [0, data_range].
    y: images in [0, data_range], the same shape.
    data_range: L, the dynamic range of the values.
    window_size: side of the Gaussian window.
    sigma: its standard deviation.

  Returns:
    float32 [N] in [-1, 1]; 1 for identical images.
  """
  if x.shape != y.shape:
    raise ValueError(f'ssim needs images of one shape, got {x.shape} and {y.shape}.')
  size = min(window_size, x.shape[1], x.shape[2])
  size -= 1 - size % 2
  window = gaussian_window(size, sigma)
  x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
  mu_x, mu_y = _filter_valid(x, window), _filter_valid(y, window)
  # (Co)variances do not change when x and y are shifted; centring them first keeps
  # E[x²] − E[x]² from cancelling away float32 digits.
  xc = x - jnp.mean(x, axis=(1, 2), keepdims=True)
  yc = y - jnp.mean(y, axis=(1, 2), keepdims=True)
  mu_xc, mu_yc = _filter_valid(xc, window), _filter_valid(yc, window)
  var_x = _filter_valid(xc * xc, window) - mu_xc**2
  var_y = _filter_valid(yc * yc, window) - mu_yc**2
  cov = _filter_valid(xc * yc, window) - mu_xc * mu_yc
  ssim_map = ((2.0 * mu_x * mu_y + c1) * (2.0 * cov + c2)) / (
    (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
  )
  return jnp.mean(ssim_map, axis=(1, 2, 3))


def grid_energy_share(images: jax.Array) -> jax.Array:
  """Share of an image's spectral energy at the stride-2 and stride-4 grid frequencies.

  A stride-2 transposed conv (twice, in the generator) paints a pattern that repeats
  every 2 and 4 pixels: its energy sits at the frequencies k·N/4 on each axis. This is
  the power at those bins (DC excluded) over all non-DC power, of the luma with its mean
  removed; sides are cropped to multiples of 4. Compare an output's share with its
  ground truth's: a ratio well above 1 is a checkerboard.

  Args:
    images: [N, H, W, C] in [0, 1] (C = 1 or 3).

  Returns:
    float32 [N] in [0, 1].
  """
  n, h, w, c = images.shape
  x = images[:, : h - h % 4, : w - w % 4].astype(jnp.float32)
  if c == 3:
    x = x @ jnp.array([0.299, 0.587, 0.114], jnp.float32)
  else:
    x = x[..., 0]
  x = x - jnp.mean(x, axis=(1, 2), keepdims=True)
  power = jnp.square(jnp.abs(jnp.fft.fft2(x)))
  hh, ww = x.shape[1], x.shape[2]
  rows = jnp.zeros(hh, bool).at[jnp.arange(4) * (hh // 4)].set(True)
  cols = jnp.zeros(ww, bool).at[jnp.arange(4) * (ww // 4)].set(True)
  grid = rows[:, None] & cols[None, :]
  grid = grid.at[0, 0].set(False)
  total = jnp.sum(power, axis=(1, 2))
  return jnp.sum(jnp.where(grid, power, 0.0), axis=(1, 2)) / jnp.maximum(total, 1e-12)
