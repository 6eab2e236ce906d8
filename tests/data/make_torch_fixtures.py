"""Writes the PyTorch fixtures of tests/test_torch_weights.py (needs torch; CI does not).

A self-contained re-statement of the official networks (junyanz/pytorch-CycleGAN-and-pix2pix,
models/networks.py at 2a7afba: ResnetGenerator with reflect padding and no dropout,
NLayerDiscriminator, both with InstanceNorm2d(affine=False, track_running_stats=False)),
built as the same `nn.Sequential` in `self.model`, so the state-dict keys are the official
ones (checked against the official code at commit 2a7afba). Weights AND biases are random, so a
wrong layout or a dropped bias shows. Run from the repository root, once:

  /work/torchvenv/bin/python tests/data/make_torch_fixtures.py

Outputs (tests/data/): `<name>.pth` saved as the official code saves (`torch.save(
net.state_dict(), path)`, zip format) and `<name>.npz` with `x` and `y`, the input and the
PyTorch output, both NHWC float32. Plus `tensors_{zip,legacy}.pth` / `tensors.npz`: odd
tensors (views with offsets and strides, shared storages, float16/bfloat16/int64, a scalar)
for the reader itself.
"""

import collections
import json
import os

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(HERE, '..', '..', '..', 'shared', 'reference')


def norm(channels: int) -> nn.Module:
  return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
  """The official ResnetBlock with padding_type='reflect', use_dropout=False."""

  def __init__(self, dim: int):
    super().__init__()
    self.conv_block = nn.Sequential(
      nn.ReflectionPad2d(1),
      nn.Conv2d(dim, dim, 3, padding=0, bias=True),
      norm(dim),
      nn.ReLU(True),
      nn.ReflectionPad2d(1),
      nn.Conv2d(dim, dim, 3, padding=0, bias=True),
      norm(dim),
    )

  def forward(self, x):
    return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
  """The official ResnetGenerator (InstanceNorm, so use_bias=True everywhere)."""

  def __init__(self, input_nc: int, output_nc: int, ngf: int, n_blocks: int):
    super().__init__()
    model = [
      nn.ReflectionPad2d(3),
      nn.Conv2d(input_nc, ngf, 7, padding=0, bias=True),
      norm(ngf),
      nn.ReLU(True),
    ]
    for i in range(2):
      mult = 2**i
      model += [
        nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True),
        norm(ngf * mult * 2),
        nn.ReLU(True),
      ]
    for _ in range(n_blocks):
      model += [ResnetBlock(ngf * 4)]
    for i in range(2):
      mult = 2 ** (2 - i)
      model += [
        nn.ConvTranspose2d(
          ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=True
        ),
        norm(ngf * mult // 2),
        nn.ReLU(True),
      ]
    model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, padding=0), nn.Tanh()]
    self.model = nn.Sequential(*model)

  def forward(self, x):
    return self.model(x)


class NLayerDiscriminator(nn.Module):
  """The official NLayerDiscriminator (PatchGAN), InstanceNorm so biases everywhere."""

  def __init__(self, input_nc: int, ndf: int, n_layers: int):
    super().__init__()
    kw, padw = 4, 1
    sequence = [
      nn.Conv2d(input_nc, ndf, kw, stride=2, padding=padw),
      nn.LeakyReLU(0.2, True),
    ]
    nf_mult = 1
    for n in range(1, n_layers):
      nf_mult_prev, nf_mult = nf_mult, min(2**n, 8)
      sequence += [
        nn.Conv2d(
          ndf * nf_mult_prev, ndf * nf_mult, kw, stride=2, padding=padw, bias=True
        ),
        norm(ndf * nf_mult),
        nn.LeakyReLU(0.2, True),
      ]
    nf_mult_prev, nf_mult = nf_mult, min(2**n_layers, 8)
    sequence += [
      nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kw, stride=1, padding=padw, bias=True),
      norm(ndf * nf_mult),
      nn.LeakyReLU(0.2, True),
    ]
    sequence += [nn.Conv2d(ndf * nf_mult, 1, kw, stride=1, padding=padw)]
    self.model = nn.Sequential(*sequence)

  def forward(self, x):
    return self.model(x)


def randomise(net: nn.Module) -> None:
  """Random weights near the reference init, and random non-zero biases."""
  for name, p in net.named_parameters():
    with torch.no_grad():
      if name.endswith('bias'):
        p.uniform_(-0.5, 0.5)
      else:
        p.normal_(0.0, 0.1)


def check_keys(net: nn.Module, reference: str) -> None:
  with open(os.path.join(REFERENCE, reference)) as f:
    want = [(k['key'], k['shape']) for k in json.load(f)['keys']]
  got = [(k, list(v.shape)) for k, v in net.state_dict().items()]
  assert got == want, (reference, got, want)


def nhwc(t: torch.Tensor) -> np.ndarray:
  return t.detach().permute(0, 2, 3, 1).numpy().astype(np.float32)


def save(name: str, net: nn.Module, x: torch.Tensor, state_dict=None) -> None:
  net.eval()
  with torch.no_grad():
    y = net(x)
  torch.save(
    state_dict if state_dict is not None else net.state_dict(),
    os.path.join(HERE, f'{name}.pth'),
  )
  np.savez(os.path.join(HERE, f'{name}.npz'), x=nhwc(x), y=nhwc(y))
  print(name, tuple(x.shape), '->', tuple(y.shape))


def tensor_fixtures() -> None:
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7
  sd = collections.OrderedDict()
  sd['transposed'] = base.t()  # Non-contiguous strides.
  sd['offset_slice'] = base[1:3, 2::2]  # Offset and stride in a shared storage.
  sd['same_storage'] = base.view(24)[5:9]  # A third view of the same storage.
  sd['half'] = (torch.arange(6, dtype=torch.float16) - 2.5).reshape(2, 3)
  sd['bfloat16'] = torch.tensor([1.5, -2.25, 3.0e10], dtype=torch.bfloat16)
  sd['int64'] = torch.tensor([[1, -2], [3, 2**40]], dtype=torch.int64)
  sd['scalar'] = torch.tensor(3.5)
  sd['empty'] = torch.zeros(0, 3)
  sd['param'] = nn.Parameter(torch.ones(2, 2))  # Pickled via _rebuild_parameter.
  expected = {
    k: v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
    for k, v in sd.items()
  }
  torch.save(sd, os.path.join(HERE, 'tensors_zip.pth'))
  torch.save(
    sd, os.path.join(HERE, 'tensors_legacy.pth'), _use_new_zipfile_serialization=False
  )
  np.savez(os.path.join(HERE, 'tensors.npz'), **expected)


def main() -> None:
  torch.manual_seed(0)
  check_keys(
    ResnetGenerator(3, 3, 16, 9), 'official_G_resnet_9blocks_ngf16_state_dict_keys.json'
  )
  check_keys(NLayerDiscriminator(3, 16, 3), 'official_D_basic_ndf16_state_dict_keys.json')

  x = torch.rand(2, 3, 32, 48) * 2 - 1  # Batch 2, non-square.
  g9 = ResnetGenerator(3, 3, ngf=8, n_blocks=9)
  randomise(g9)
  save('G_resnet9_ngf8', g9, x)
  g6 = ResnetGenerator(3, 3, ngf=6, n_blocks=6)
  randomise(g6)
  save('G_resnet6_ngf6', g6, x)
  d3 = NLayerDiscriminator(3, ndf=8, n_layers=3)
  randomise(d3)
  save('D_basic_ndf8', d3, x)
  # n_layers=2, saved as nn.DataParallel does (`module.` prefix).
  d2 = NLayerDiscriminator(3, ndf=8, n_layers=2)
  randomise(d2)
  save(
    'D_n2_ndf8_module',
    d2,
    torch.rand(2, 3, 40, 24) * 2 - 1,
    collections.OrderedDict((f'module.{k}', v) for k, v in d2.state_dict().items()),
  )
  tensor_fixtures()


if __name__ == '__main__':
  main()
