"""Writes the pix2pix fixtures of tests/test_pix2pix_weights.py (needs torch; CI does not).

A self-contained re-statement of the official pix2pix networks (junyanz/pytorch-CycleGAN-
and-pix2pix, models/networks.py: UnetGenerator / UnetSkipConnectionBlock,
NLayerDiscriminator and PixelDiscriminator, with `get_norm_layer`'s BatchNorm2d(affine=True)
or InstanceNorm2d(affine=False, track_running_stats=False) and its `use_bias` rule), built
as the same nested modules, so the state-dict keys are the official ones
(`model.model.1.model.3.model.2.running_var` ...). Weights, biases and running
statistics are random (the statistics near those of real activations, then perturbed),
and `num_batches_tracked` is set, as a trained file has it. Run from the repository root,
once:

  /work/torchvenv/bin/python tests/data/make_pix2pix_fixtures.py

Outputs (tests/data/), kept small (the U-Nets' full inputs are 128 or 256 px):

* `<name>.pth`: `torch.save(net.state_dict(), path)` as the official code saves; one in
  the legacy (pre-1.6) format, as the older zoo files are.
* `<name>.npz`: `x_u8` the input as 8-bit NHWC (x = x_u8 / 127.5 - 1 exactly in
  float32), and for each test mode, `eval` (`net.eval()`: running statistics, no
  dropout) and `train` (the official test.py default, which never calls eval(): batch
  statistics, dropout active): `<mode>_idx`, flat (n, h, w) indices of sampled output
  pixels, `<mode>_y` their NHWC values, `<mode>_mean` the whole output's per-channel
  mean; `train_mask_<i>` the dropout masks of U-Net block i (0 = outermost) in NHWC as
  the train pass drew them (forward hooks); `after:<key>` the running statistics after
  that train pass (torch's momentum update).
"""

import collections
import functools
import os

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = 1500  # Output pixels kept per mode.


def norm_layer(norm: str):
  """The official `get_norm_layer`."""
  if norm == 'batch':
    return functools.partial(nn.BatchNorm2d, affine=True)
  return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)


def uses_bias(layer) -> bool:
  return layer.func == nn.InstanceNorm2d


class UnetSkipConnectionBlock(nn.Module):
  """The official UnetSkipConnectionBlock (in-place LeakyReLU/ReLU included)."""

  def __init__(
    self,
    outer_nc,
    inner_nc,
    input_nc=None,
    submodule=None,
    outermost=False,
    innermost=False,
    norm_layer=None,
    use_dropout=False,
  ):
    super().__init__()
    self.outermost = outermost
    use_bias = uses_bias(norm_layer)
    if input_nc is None:
      input_nc = outer_nc
    downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=use_bias)
    downrelu = nn.LeakyReLU(0.2, True)
    downnorm = norm_layer(inner_nc)
    uprelu = nn.ReLU(True)
    upnorm = norm_layer(outer_nc)
    if outermost:
      upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)
      model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
    elif innermost:
      upconv = nn.ConvTranspose2d(
        inner_nc, outer_nc, 4, stride=2, padding=1, bias=use_bias
      )
      model = [downrelu, downconv, uprelu, upconv, upnorm]
    else:
      upconv = nn.ConvTranspose2d(
        inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=use_bias
      )
      model = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
      if use_dropout:
        model += [nn.Dropout(0.5)]
    self.model = nn.Sequential(*model)

  def forward(self, x):
    if self.outermost:
      return self.model(x)
    return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
  """The official UnetGenerator."""

  def __init__(self, input_nc, output_nc, num_downs, ngf, norm, use_dropout):
    super().__init__()
    layer = norm_layer(norm)
    block = UnetSkipConnectionBlock(
      ngf * 8, ngf * 8, submodule=None, norm_layer=layer, innermost=True
    )
    for _ in range(num_downs - 5):
      block = UnetSkipConnectionBlock(
        ngf * 8, ngf * 8, submodule=block, norm_layer=layer, use_dropout=use_dropout
      )
    block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm_layer=layer)
    block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm_layer=layer)
    block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm_layer=layer)
    self.model = UnetSkipConnectionBlock(
      output_nc,
      ngf,
      input_nc=input_nc,
      submodule=block,
      outermost=True,
      norm_layer=layer,
    )

  def forward(self, x):
    return self.model(x)


class NLayerDiscriminator(nn.Module):
  """The official NLayerDiscriminator (PatchGAN)."""

  def __init__(self, input_nc, ndf, n_layers, norm):
    super().__init__()
    layer = norm_layer(norm)
    use_bias = uses_bias(layer)
    sequence = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
    nf_mult = 1
    for n in range(1, n_layers):
      nf_mult_prev, nf_mult = nf_mult, min(2**n, 8)
      sequence += [
        nn.Conv2d(
          ndf * nf_mult_prev, ndf * nf_mult, 4, stride=2, padding=1, bias=use_bias
        ),
        layer(ndf * nf_mult),
        nn.LeakyReLU(0.2, True),
      ]
    nf_mult_prev, nf_mult = nf_mult, min(2**n_layers, 8)
    sequence += [
      nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, 4, stride=1, padding=1, bias=use_bias),
      layer(ndf * nf_mult),
      nn.LeakyReLU(0.2, True),
      nn.Conv2d(ndf * nf_mult, 1, 4, stride=1, padding=1),
    ]
    self.model = nn.Sequential(*sequence)

  def forward(self, x):
    return self.model(x)


class PixelDiscriminator(nn.Module):
  """The official PixelDiscriminator (1×1 PatchGAN)."""

  def __init__(self, input_nc, ndf, norm):
    super().__init__()
    layer = norm_layer(norm)
    use_bias = uses_bias(layer)
    self.net = nn.Sequential(
      nn.Conv2d(input_nc, ndf, 1, stride=1, padding=0),
      nn.LeakyReLU(0.2, True),
      nn.Conv2d(ndf, ndf * 2, 1, stride=1, padding=0, bias=use_bias),
      layer(ndf * 2),
      nn.LeakyReLU(0.2, True),
      nn.Conv2d(ndf * 2, 1, 1, stride=1, padding=0, bias=use_bias),
    )

  def forward(self, x):
    return self.net(x)


def randomise(net: nn.Module, x: torch.Tensor, gen: torch.Generator) -> None:
  """Random weights and biases; running statistics near real ones, then perturbed."""
  with torch.no_grad():
    for name, p in net.named_parameters():
      if name.endswith('bias'):
        p.uniform_(-0.5, 0.5, generator=gen)
      elif p.ndim == 1:  # A BatchNorm2d weight.
        p.normal_(1.0, 0.2, generator=gen)
      else:
        p.normal_(0.0, 0.1, generator=gen)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
      m.momentum = 1.0  # One train pass sets the running statistics to its batch's.
    net.train()
    net(x * 0.8 + 0.1 * torch.randn(x.shape, generator=gen))
    for m in bns:
      m.momentum = 0.1
      c = m.num_features
      m.running_mean.add_(0.3 * m.running_var.sqrt() * torch.randn(c, generator=gen))
      m.running_var.mul_(torch.empty(c).uniform_(0.5, 2.0, generator=gen))
      m.num_batches_tracked.fill_(int(torch.randint(100, 5000, (1,), generator=gen)))


def nhwc(t: torch.Tensor) -> np.ndarray:
  return t.detach().permute(0, 2, 3, 1).numpy().astype(np.float32)


def image_input(shape, block: int, rng: np.random.Generator):
  """(x NCHW float32, x_u8 NHWC): random 8-bit pixels in blocks×blocks squares (the
  file stays small), x = x_u8 / 127.5 - 1."""
  n, c, h, w = shape
  small = rng.integers(0, 256, (n, h // block, w // block, c), dtype=np.uint8)
  x_u8 = np.repeat(np.repeat(small, block, axis=1), block, axis=2)
  x = x_u8.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), x_u8


def record(out: dict, mode: str, y: torch.Tensor, rng: np.random.Generator) -> None:
  y = nhwc(y)
  flat = y.reshape(-1, y.shape[-1])
  idx = np.sort(rng.choice(flat.shape[0], min(SAMPLES, flat.shape[0]), replace=False))
  out[f'{mode}_idx'] = idx.astype(np.int32)
  out[f'{mode}_y'] = flat[idx]
  out[f'{mode}_mean'] = y.mean(axis=(0, 1, 2))
  out[f'{mode}_shape'] = np.asarray(y.shape, np.int32)


def save(
  name: str,
  net: nn.Module,
  x: torch.Tensor,
  x_u8: np.ndarray,
  rng: np.random.Generator,
  legacy: bool = False,
) -> None:
  """Writes `name`.pth (before any test pass) and `name`.npz (both modes)."""
  path = os.path.join(HERE, f'{name}.pth')
  state = collections.OrderedDict((k, v.clone()) for k, v in net.state_dict().items())
  if legacy:
    torch.save(state, path, _use_new_zipfile_serialization=False)
  else:
    torch.save(state, path)
  out = {'x_u8': x_u8}
  net.eval()
  with torch.no_grad():
    record(out, 'eval', net(x), rng)

  masks = {}
  blocks = [m for m in net.modules() if isinstance(m, UnetSkipConnectionBlock)]
  hooks = []
  for i, block in enumerate(blocks):  # Pre-order: outermost first.
    for layer in block.model.children():
      if isinstance(layer, nn.Dropout):

        def hook(module, inputs, output, i=i):
          masks[i] = nhwc((output != 0).float()).astype(bool)

        hooks.append(layer.register_forward_hook(hook))
  net.train()
  with torch.no_grad():
    record(out, 'train', net(x), rng)
  for h in hooks:
    h.remove()
  for i, mask in masks.items():
    out[f'train_mask_{i}'] = mask
  for key, value in net.state_dict().items():
    if key.endswith(('running_mean', 'running_var')):
      out[f'after:{key}'] = value.numpy().astype(np.float32)
  np.savez_compressed(os.path.join(HERE, f'{name}.npz'), **out)
  print(name, tuple(x.shape), sorted(masks), os.path.getsize(path))


def main() -> None:
  gen = torch.Generator().manual_seed(0)
  rng = np.random.default_rng(0)

  # The zoo's layout: unet_256, batch norm, dropout.
  x, x_u8 = image_input((2, 3, 256, 256), 4, rng)
  g = UnetGenerator(3, 3, 8, ngf=2, norm='batch', use_dropout=True)
  randomise(g, x, gen)
  save('G_unet256_ngf2_batch', g, x, x_u8, rng)

  # unet_128 with batch norm and dropout, saved in the legacy format; 1 → 3 channels.
  x, x_u8 = image_input((2, 1, 128, 128), 2, rng)
  g = UnetGenerator(1, 3, 7, ngf=2, norm='batch', use_dropout=True)
  randomise(g, x, gen)
  save('G_unet128_ngf2_batch_legacy', g, x, x_u8, rng, legacy=True)

  # unet_128 with instance norm (biases everywhere), no dropout.
  x, x_u8 = image_input((2, 3, 128, 128), 2, rng)
  g = UnetGenerator(3, 3, 7, ngf=1, norm='instance', use_dropout=False)
  randomise(g, x, gen)
  save('G_unet128_ngf1_instance', g, x, x_u8, rng)

  # The conditional critics: concat(A, B), 6 channels.
  x, x_u8 = image_input((2, 6, 64, 64), 1, rng)
  d = NLayerDiscriminator(6, ndf=4, n_layers=3, norm='batch')
  randomise(d, x, gen)
  save('D_basic_ndf4_batch', d, x, x_u8, rng)
  x, x_u8 = image_input((2, 6, 16, 16), 1, rng)
  d = PixelDiscriminator(6, ndf=8, norm='batch')
  randomise(d, x, gen)
  save('D_pixel_ndf8_batch', d, x, x_u8, rng)


if __name__ == '__main__':
  main()
