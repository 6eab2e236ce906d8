"""3×3 stride-1 convolutions by Winograd's minimal filtering F(2×2, 3×3) / F(4×4, 3×3),
forward and backward in the Winograd domain (Lavin & Gray 2016)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from cyclegan_jax.nets.cpu_forms.variance import common_variance


@dataclasses.dataclass(frozen=True)
class WinogradTile:
  """Winograd's minimal filtering F(m×m, 3×3): m×m outputs from each (m+2)² input tile.

  Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A per tile (Lavin & Gray 2016): (m+2)² products per
  channel pair instead of 9·m², at the cost of more transform work and, for larger m,
  more rounding (the constants grow).

  Attributes:
    m: output tile side; input tiles are m + 2 wide and start every m pixels.
    bt: Bᵀ, (m+2, m+2), the input transform.
    g: G, (m+2, 3), the kernel transform.
    at: Aᵀ, (m, m+2), the output transform.
  """

  m: int
  bt: np.ndarray
  g: np.ndarray
  at: np.ndarray

  @property
  def size(self) -> int:
    """The input tile's side, m + 2."""
    return self.m + 2

  @property
  def g_kron_g(self) -> np.ndarray:
    """G ⊗ G, ((m+2)², 9): U[a, b] = Σ_{i,j} G[a, i] G[b, j] g[i, j] is its row
    (m+2)·a + b times the 9 taps of g, flattened row-major."""
    return np.kron(self.g, self.g)


# F(2×2, 3×3): 16 products per 4 outputs (2.25× fewer than direct); the transforms only
# add, subtract and halve (relative error ~1e-6 in float32).
F2X2 = WinogradTile(
  m=2,
  bt=np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32),
  g=np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32),
  at=np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32),
)

# F(4×4, 3×3), points 0, ±1, ±2, ∞: 36 products per 16 outputs (4× fewer than direct);
# relative error ~1e-5 in float32.
F4X4 = WinogradTile(
  m=4,
  bt=np.array(
    [
      [4, 0, -5, 0, 1, 0],
      [0, -4, -4, 1, 1, 0],
      [0, 4, -4, -1, 1, 0],
      [0, -2, -1, 2, 1, 0],
      [0, 2, -1, -2, 1, 0],
      [0, 4, 0, -5, 0, 1],
    ],
    np.float32,
  ),
  g=np.array(
    [
      [1 / 4, 0, 0],
      [-1 / 6, -1 / 6, -1 / 6],
      [-1 / 6, 1 / 6, -1 / 6],
      [1 / 24, 1 / 12, 1 / 6],
      [1 / 24, -1 / 12, 1 / 6],
      [0, 0, 1],
    ],
    np.float32,
  ),
  at=np.array(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    np.float32,
  ),
)

WINOGRAD_TILES = {2: F2X2, 4: F4X4}

# F(4×4) wins from about 40×40 outputs on XLA:CPU (docs/cpu_conv_forms.md).
F4X4_MIN_OUTPUT = 40


def winograd_tile_for(out_h: int, out_w: int) -> int:
  """The tile side `winograd_conv3x3` uses for an out_h × out_w output by default."""
  return 4 if min(out_h, out_w) >= F4X4_MIN_OUTPUT else 2


def _combine(matrix: np.ndarray, parts: list[jax.Array]) -> list[jax.Array]:
  """[Σ_j matrix[i, j] · parts[j] for each row i], skipping zeros and ±1 multiplies."""
  out = []
  for row in matrix:
    total = None
    for coefficient, part in zip(row.tolist(), parts):
      if coefficient == 0:
        continue
      term = (
        part
        if coefficient == 1
        else -part
        if coefficient == -1
        else part * jnp.asarray(coefficient, part.dtype)
      )
      total = term if total is None else total + term
    out.append(jnp.zeros_like(parts[0]) if total is None else total)
  return out


def _phase_views(
  x: jax.Array, axis: int, tiles: int, tile: WinogradTile
) -> list[jax.Array]:
  """The m+2 views x[r::m][:tiles] along `axis`, r = 0 … m+1: row r of every
  overlapping input tile, one array per offset."""
  views = []
  for r in range(tile.size):
    start, limit, strides = [0] * x.ndim, list(x.shape), [1] * x.ndim
    start[axis], limit[axis], strides[axis] = r, r + tile.m * (tiles - 1) + 1, tile.m
    views.append(jax.lax.slice(x, start, limit, strides))
  return views


def _overlap_add(parts: list[jax.Array], axis: int, tile: WinogradTile) -> jax.Array:
  """The transpose of cutting overlapping (m+2)-wide, stride-m tiles along `axis`.

  parts[r] holds, for every tile p, the gradient of the tile's row r, i.e. of input row
  m·p + r. Input row m·q + s collects row s of tile q and, for s < 2, row m + s of tile
  q − 1. Returns the (m·tiles + 2)-long axis, the m phases interleaved.
  """

  def shift(x: jax.Array, before: int) -> jax.Array:  # Tile q − 1 (before) or q.
    pad = [(0, 0)] * x.ndim
    pad[axis] = (before, 1 - before)
    return jnp.pad(x, pad)

  phases = [
    shift(parts[s], 0) + shift(parts[s + tile.m], 1)
    if s + tile.m < tile.size
    else shift(parts[s], 0)
    for s in range(tile.m)
  ]
  shape = list(phases[0].shape)
  shape[axis] *= tile.m
  return jnp.stack(phases, axis=axis + 1).reshape(shape)[
    (slice(None),) * axis + (slice(0, shape[axis] - tile.m + 2),)
  ]


def winograd_conv3x3(
  x: jax.Array, kernel: jax.Array, tile: int | None = None
) -> jax.Array:
  """A VALID, stride-1 3×3 convolution by Winograd's minimal filtering F(m×m, 3×3).

  Equals `lax.conv_general_dilated(x, kernel, (1, 1), 'VALID')` (NHWC/HWIO) to float
  rounding (relative error ~1e-6 in float32 with 2×2 tiles, ~1e-5 with 4×4). Each m×m
  output tile needs (m+2)² products per channel pair instead of 9·m², so the
  convolution becomes (m+2)² matmuls (T tiles × Cin) · (Cin × Cout) with 2.25× (m = 2)
  or 4× (m = 4) fewer multiply-adds, between cheap elementwise transforms. The backward
  (a custom VJP) stays in the Winograd domain: dV = dM · Uᵀ and dU = Vᵀ · dM as
  row-major batched matmuls, then the transposed transforms (an overlap-add of the
  tiles for dx). Output sizes that m does not divide get zero tiles, cropped.

  Args:
    x: (N, Hp, Wp, Cin) input, already padded.
    kernel: (3, 3, Cin, Cout) HWIO kernel.
    tile: output tile side, 2 or 4 (`WINOGRAD_TILES`); None: `winograd_tile_for` the
      output size.

  Returns:
    The (N, Hp − 2, Wp − 2, Cout) output in x's dtype.
  """
  if tile is None:
    tile = winograd_tile_for(x.shape[1] - 2, x.shape[2] - 2)
  if tile not in WINOGRAD_TILES:
    raise ValueError(
      f'Winograd tile must be one of {sorted(WINOGRAD_TILES)}, got {tile}.'
    )
  return _winograd(*common_variance(x, kernel.astype(x.dtype)), tile)


def _winograd_tiles(
  x: jax.Array, tile: WinogradTile
) -> tuple[jax.Array, tuple[int, int]]:
  """V = Bᵀ d B of every input tile, ((m+2)², N·tiles_h·tiles_w, Cin), and the tiling."""
  n, hp, wp, cin = x.shape
  tiles_h, tiles_w = -(-(hp - 2) // tile.m), -(-(wp - 2) // tile.m)
  x = jnp.pad(
    x, ((0, 0), (0, tile.m * tiles_h + 2 - hp), (0, tile.m * tiles_w + 2 - wp), (0, 0))
  )
  v = jnp.stack(
    [
      col
      for row in _combine(tile.bt, _phase_views(x, 1, tiles_h, tile))
      for col in _combine(tile.bt, _phase_views(row, 2, tiles_w, tile))
    ]
  )
  return v.reshape(tile.size**2, n * tiles_h * tiles_w, cin), (tiles_h, tiles_w)


def _winograd_kernel(kernel: jax.Array, tile: WinogradTile) -> jax.Array:
  """U = G g Gᵀ of every (Cin, Cout) pair: ((m+2)², Cin, Cout).

  One product against the constant G ⊗ G rather than (m+2)² weighted sums, which
  XLA:CPU ran as that many fusions and a separate concatenation. HIGHEST keeps it exact
  in float32 where a backend would otherwise round a float32 dot's inputs (TPU, TF32).
  """
  _, _, cin, cout = kernel.shape
  u = jnp.dot(
    jnp.asarray(tile.g_kron_g, kernel.dtype),
    kernel.reshape(9, cin * cout),
    precision=jax.lax.Precision.HIGHEST,
  )
  return u.reshape(tile.size**2, cin, cout)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _winograd(x: jax.Array, kernel: jax.Array, tile: int) -> jax.Array:
  return _winograd_fwd(x, kernel, tile)[0]


def _winograd_fwd(
  x: jax.Array, kernel: jax.Array, tile: int
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  t = WINOGRAD_TILES[tile]
  n, hp, wp, _ = x.shape
  cout = kernel.shape[-1]
  v, (tiles_h, tiles_w) = _winograd_tiles(x, t)
  products = jnp.einsum('etc,eco->eto', v, _winograd_kernel(kernel, t))
  products = products.reshape(t.size, t.size, n, tiles_h, tiles_w, cout)
  # Y = Aᵀ M A, then the m×m outputs of each tile back into place.
  y = jnp.stack(
    [
      jnp.stack(_combine(t.at, [row[j] for j in range(t.size)]))
      for row in _combine(t.at, [products[i] for i in range(t.size)])
    ]
  )
  y = y.transpose(2, 3, 0, 4, 1, 5).reshape(n, t.m * tiles_h, t.m * tiles_w, cout)
  return y[:, : hp - 2, : wp - 2], (x, kernel)


def _winograd_bwd(
  tile: int, residuals: tuple[jax.Array, jax.Array], dy: jax.Array
) -> tuple[jax.Array, jax.Array]:
  t = WINOGRAD_TILES[tile]
  x, kernel = residuals
  n, hp, wp, cin = x.shape
  cout = kernel.shape[-1]
  v, (tiles_h, tiles_w) = _winograd_tiles(x, t)
  # dM = A dY Aᵀ of every output tile: ((m+2)², T, Cout).
  dy = jnp.pad(
    dy,
    ((0, 0), (0, t.m * tiles_h - dy.shape[1]), (0, t.m * tiles_w - dy.shape[2]), (0, 0)),
  )
  dy = dy.reshape(n, tiles_h, t.m, tiles_w, t.m, cout)
  dm = jnp.stack(
    [
      col
      for row in _combine(t.at.T, [dy[:, :, a] for a in range(t.m)])
      for col in _combine(t.at.T, [row[:, :, :, b] for b in range(t.m)])
    ]
  )
  dm = dm.reshape(t.size**2, n * tiles_h * tiles_w, cout)
  # Row-major batched products on both sides (the transposes are materialised).
  u_t = _winograd_kernel(kernel, t).transpose(0, 2, 1)
  dv = jnp.einsum('eto,eoc->etc', dm, u_t)
  dv = dv.reshape(t.size, t.size, n, tiles_h, tiles_w, cin)
  # (The barrier keeps XLA from folding the transpose back into the product, which
  # would make it column-major and several times slower on CPU.)
  v_t = jax.lax.optimization_barrier(v.transpose(0, 2, 1))
  du = jnp.einsum('ect,eto->eco', v_t, dm)
  # dg = Gᵀ dU G: the transpose of `_winograd_kernel`'s product.
  dkernel = jnp.dot(
    jnp.asarray(t.g_kron_g.T, du.dtype),
    du.reshape(-1, cin * cout),
    precision=jax.lax.Precision.HIGHEST,
  ).reshape(3, 3, cin, cout)
  # dx = B dV Bᵀ, each tile added back where it was cut: columns, then rows.
  dx_rows = [
    _overlap_add(_combine(t.bt.T, [dv[i, j] for j in range(t.size)]), 2, t)
    for i in range(t.size)
  ]
  dx = _overlap_add(_combine(t.bt.T, dx_rows), 1, t)
  return dx[:, :hp, :wp], dkernel


_winograd.defvjp(_winograd_fwd, _winograd_bwd)
