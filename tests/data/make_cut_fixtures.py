"""Makes the CUT fixtures with PyTorch, once: `cut_fixtures.npz` and `G_cut_ngf4.pth`.

  /path/to/torch/python tests/data/make_cut_fixtures.py

A torch transcription of the official CUT code's pieces
(taesungp/contrastive-unpaired-translation, models/networks.py and models/patchnce.py):
the antialiased ResnetGenerator (`no_antialias=False`, `no_antialias_up=False`) and
NLayerDiscriminator, PatchSampleF's MLP heads and sampling, Normalize and PatchNCELoss.
The tests never import torch; they compare against what this script wrote:

- the parameter counts of the MLP heads for the official feature channels (3, 128,
  256, 256, 256 at ngf 64), of the default generator and of the default critic;
- the PatchNCE loss (per layer and the layer average) of fixed features, fixed MLP
  weights and fixed patch positions, with negatives from each image and from the batch;
- a small generator (ngf 4, 6 blocks, random weights, saved as a .pth) with its output
  and its features at layers 0, 4, 8, 12, 16 on a fixed input.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
LAYERS = (0, 4, 8, 12, 16)


def binomial(size: int) -> torch.Tensor:
  row = {3: [1.0, 2.0, 1.0], 4: [1.0, 3.0, 3.0, 1.0]}[size]
  a = torch.tensor(row)
  f = a[:, None] * a[None, :]
  return f / f.sum()


class Down(nn.Module):
  """The official `Downsample` (3×3 binomial, reflect pad 1, stride 2), depthwise."""

  def __init__(self, channels: int):
    super().__init__()
    self.register_buffer('filt', binomial(3)[None, None].repeat(channels, 1, 1, 1))

  def forward(self, x):
    x = nn.functional.pad(x, (1, 1, 1, 1), mode='reflect')
    return nn.functional.conv2d(x, self.filt, stride=2, groups=x.shape[1])


class Up(nn.Module):
  """The official `Upsample`: replicate pad 1, the 4×4 binomial ×4 transposed at stride
  2 with padding 2, then the first row/column and the last row/column dropped."""

  def __init__(self, channels: int):
    super().__init__()
    self.register_buffer('filt', (binomial(4) * 4)[None, None].repeat(channels, 1, 1, 1))

  def forward(self, x):
    x = nn.functional.pad(x, (1, 1, 1, 1), mode='replicate')
    y = nn.functional.conv_transpose2d(
      x, self.filt, stride=2, padding=2, groups=x.shape[1]
    )
    return y[:, :, 1:-1, 1:-1]


class Block(nn.Module):
  def __init__(self, dim: int):
    super().__init__()
    self.conv_block = nn.Sequential(
      nn.ReflectionPad2d(1),
      nn.Conv2d(dim, dim, 3),
      nn.InstanceNorm2d(dim),
      nn.ReLU(True),
      nn.ReflectionPad2d(1),
      nn.Conv2d(dim, dim, 3),
      nn.InstanceNorm2d(dim),
    )

  def forward(self, x):
    return x + self.conv_block(x)


class Generator(nn.Module):
  """The official antialiased ResnetGenerator (instance norm, so biased convs)."""

  def __init__(self, input_nc: int, output_nc: int, ngf: int, n_blocks: int):
    super().__init__()
    layers = [
      nn.ReflectionPad2d(3),
      nn.Conv2d(input_nc, ngf, 7),
      nn.InstanceNorm2d(ngf),
      nn.ReLU(True),
    ]
    for i in range(2):
      c = ngf * 2**i
      layers += [
        nn.Conv2d(c, 2 * c, 3, padding=1),
        nn.InstanceNorm2d(2 * c),
        nn.ReLU(True),
        Down(2 * c),
      ]
    layers += [Block(4 * ngf) for _ in range(n_blocks)]
    for i in range(2):
      c = ngf * 2 ** (2 - i)
      layers += [
        Up(c),
        nn.Conv2d(c, c // 2, 3, padding=1),
        nn.InstanceNorm2d(c // 2),
        nn.ReLU(True),
      ]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
    self.model = nn.Sequential(*layers)

  def forward(self, x, layers=()):
    feats = []
    for i, layer in enumerate(self.model):
      x = layer(x)
      if i in layers:
        feats.append(x)
    return x, feats


def critic(input_nc: int, ndf: int, n_layers: int) -> nn.Sequential:
  """The official antialiased NLayerDiscriminator with instance norm."""
  seq = [nn.Conv2d(input_nc, ndf, 4, 1, 1), nn.LeakyReLU(0.2, True), Down(ndf)]
  mult = 1
  for n in range(1, n_layers):
    prev, mult = mult, min(2**n, 8)
    seq += [
      nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1),
      nn.InstanceNorm2d(ndf * mult),
      nn.LeakyReLU(0.2, True),
      Down(ndf * mult),
    ]
  prev, mult = mult, min(2**n_layers, 8)
  seq += [
    nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1),
    nn.InstanceNorm2d(ndf * mult),
    nn.LeakyReLU(0.2, True),
    nn.Conv2d(ndf * mult, 1, 4, 1, 1),
  ]
  return nn.Sequential(*seq)


def head(input_nc: int, nc: int = 256) -> nn.Sequential:
  """PatchSampleF's MLP of one layer."""
  return nn.Sequential(nn.Linear(input_nc, nc), nn.ReLU(), nn.Linear(nc, nc))


def normalize(x):
  return x / (x.pow(2).sum(1, keepdim=True).pow(0.5) + 1e-7)


def sample(feat, ids):
  return feat.permute(0, 2, 3, 1).flatten(1, 2)[:, ids, :].flatten(0, 1)


def patch_nce(q, k, batch: int, tau: float, all_negatives: bool):
  """PatchNCELoss: per-row cross-entropy; diagonal of the negatives set to -10."""
  k = k.detach()
  n, dim = q.shape
  l_pos = (q * k).sum(1, keepdim=True)
  groups = 1 if all_negatives else batch
  qb, kb = q.view(groups, -1, dim), k.view(groups, -1, dim)
  p = qb.shape[1]
  l_neg = torch.bmm(qb, kb.transpose(2, 1))
  l_neg = l_neg.masked_fill(torch.eye(p, dtype=torch.bool)[None], -10.0).view(-1, p)
  logits = torch.cat([l_pos, l_neg], 1) / tau
  return nn.functional.cross_entropy(
    logits, torch.zeros(n, dtype=torch.long), reduction='none'
  )


def count(module: nn.Module) -> int:
  return sum(p.numel() for p in module.parameters())


def main() -> None:
  torch.manual_seed(0)
  out: dict[str, np.ndarray] = {}
  official_channels = (3, 128, 256, 256, 256)
  out['head_channels'] = np.array(official_channels)
  out['head_counts'] = np.array([count(head(c)) for c in official_channels])
  out['g_count_default'] = np.array(count(Generator(3, 3, 64, 9)))
  out['d_count_default'] = np.array(count(critic(3, 64, 3)))

  # PatchNCE on fixed features, heads and positions (2 images, 4 layers).
  shapes = [(2, 3, 14, 14), (2, 8, 12, 12), (2, 16, 6, 6), (2, 16, 6, 6)]
  heads = [head(s[1], 32) for s in shapes]
  num_patches, tau, lam = 24, 0.07, 1.0
  for i, (s, h) in enumerate(zip(shapes, heads)):
    q, k = torch.randn(s), torch.randn(s)
    ids = torch.randperm(s[2] * s[3])[: min(num_patches, s[2] * s[3])]
    out[f'nce_q_{i}'] = q.permute(0, 2, 3, 1).numpy()
    out[f'nce_k_{i}'] = k.permute(0, 2, 3, 1).numpy()
    out[f'nce_ids_{i}'] = ids.numpy()
    for j in (0, 2):
      out[f'nce_w_{i}_{j}'] = h[j].weight.detach().numpy().T.copy()
      out[f'nce_b_{i}_{j}'] = h[j].bias.detach().numpy()
    fq = normalize(h(sample(q, ids)))
    fk = normalize(h(sample(k, ids)))
    for all_neg in (False, True):
      rows = patch_nce(fq, fk, 2, tau, all_neg)
      out[f'nce_rows_{i}_{int(all_neg)}'] = rows.detach().numpy()
  for all_neg in (False, True):
    total = sum(out[f'nce_rows_{i}_{int(all_neg)}'].mean() * lam for i in range(4)) / 4
    out[f'nce_total_{int(all_neg)}'] = np.array(total, np.float32)
  out['nce_num_patches'] = np.array(num_patches)
  out['nce_T'] = np.array(tau)

  # A small generator with random weights: its .pth, output and features.
  g = Generator(3, 3, 4, 6)
  with torch.no_grad():
    for name, p in g.named_parameters():
      p.copy_(torch.randn_like(p) * (0.3 if name.endswith('weight') else 0.1))
  x = torch.rand(1, 3, 24, 28) * 2 - 1
  y, feats = g(x, LAYERS)
  out['g_input'] = x.permute(0, 2, 3, 1).numpy()
  out['g_output'] = y.detach().permute(0, 2, 3, 1).numpy()
  for layer, f in zip(LAYERS, feats):
    out[f'g_feat_{layer}'] = f.detach().permute(0, 2, 3, 1).numpy()
  torch.save(g.state_dict(), os.path.join(HERE, 'G_cut_ngf4.pth'))
  np.savez_compressed(os.path.join(HERE, 'cut_fixtures.npz'), **out)
  print({k: v.shape for k, v in out.items() if 'count' in k}, out['head_counts'])
  print('g_count_default', out['g_count_default'], 'd', out['d_count_default'])


if __name__ == '__main__':
  main()
