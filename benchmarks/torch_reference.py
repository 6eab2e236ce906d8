"""The official PyTorch CycleGAN (or pix2pix) iteration, timed on this machine, as the
speed baseline.

The JAX step (benchmarks/train_step.py) is only "fast" against the reference measured on
the same machine at the same time: a shared 2-core VM's speed moves by 2× from hour to
hour. This script re-states `CycleGANModel.optimize_parameters` of
junyanz/pytorch-CycleGAN-and-pix2pix (2a7afba) with the networks of
tests/data/make_torch_fixtures.py (the same re-statement the weight-import tests check
against): forward G_A(A), G_B(G_A(A)), G_B(B), G_A(G_B(B)); generators' step with the
critics frozen (LSGAN, cycle λ = 10, identity 0.5 · λ); then both critics on the real
images and on pooled fakes (pool 50, half the time an older fake), Adam(2e-4, β1 0.5).

torch is not a dependency of this project; put it in a separate environment:

  python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
  /tmp/torchvenv/bin/python benchmarks/torch_reference.py --crop_size=128 --steps=10
  python benchmarks/torch_reference.py --device=cuda --crop_size=256 --dtype=bfloat16

`--model=pix2pix` times `Pix2PixModel.optimize_parameters` instead, with the U-Net and
the batch-norm critic of tests/data/make_pix2pix_fixtures.py: G(A); the critic on
(A, G(A)) detached and (A, B), its step; then the generator's step (vanilla GAN through
the updated critic, L1 × 100).

Prints one JSON line (median / min / max s per iteration, pairs/s, threads).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(
  0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'data')
)
from make_torch_fixtures import NLayerDiscriminator  # noqa: E402  pylint: disable=g-import-not-at-top
from make_torch_fixtures import ResnetGenerator  # noqa: E402  pylint: disable=g-import-not-at-top


class ImagePool:
  """The official ImagePool: store up to `size` fakes; return an older one half the time."""

  def __init__(self, size: int):
    self.size, self.images = size, []

  def query(self, images: torch.Tensor) -> torch.Tensor:
    if self.size == 0:
      return images
    out = []
    for image in images:
      image = image.unsqueeze(0)
      if len(self.images) < self.size:
        self.images.append(image)
        out.append(image)
      elif random.uniform(0, 1) > 0.5:
        i = random.randint(0, self.size - 1)
        out.append(self.images[i].clone())
        self.images[i] = image
      else:
        out.append(image)
    return torch.cat(out, 0)


def init_normal(net: nn.Module) -> nn.Module:
  """The reference's init_weights('normal', 0.02): N(0, 0.02) conv weights, zero biases,
  batch norm scales N(1, 0.02)."""
  for m in net.modules():
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
      nn.init.normal_(m.weight, 0.0, 0.02)
      if m.bias is not None:
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
      nn.init.normal_(m.weight, 1.0, 0.02)
      nn.init.zeros_(m.bias)
  return net


class CycleGAN:
  """`CycleGANModel` reduced to what one training iteration does."""

  def __init__(self, ngf: int, ndf: int, blocks: int, pool: int, lambda_identity: float):
    self.g_a = init_normal(ResnetGenerator(3, 3, ngf, blocks))
    self.g_b = init_normal(ResnetGenerator(3, 3, ngf, blocks))
    self.d_a = init_normal(NLayerDiscriminator(3, ndf, 3))
    self.d_b = init_normal(NLayerDiscriminator(3, ndf, 3))
    self.pool_a, self.pool_b = ImagePool(pool), ImagePool(pool)
    self.lambda_identity, self.lam = lambda_identity, 10.0
    g_params = list(self.g_a.parameters()) + list(self.g_b.parameters())
    d_params = list(self.d_a.parameters()) + list(self.d_b.parameters())
    self.opt_g = torch.optim.Adam(g_params, lr=2e-4, betas=(0.5, 0.999))
    self.opt_d = torch.optim.Adam(d_params, lr=2e-4, betas=(0.5, 0.999))

  @staticmethod
  def gan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    return nn.functional.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))

  def backward_d(self, net: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> None:
    loss = 0.5 * (self.gan(net(real), True) + self.gan(net(fake.detach()), False))
    loss.backward()

  def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> None:
    fake_b = self.g_a(real_a)
    rec_a = self.g_b(fake_b)
    fake_a = self.g_b(real_b)
    rec_b = self.g_a(fake_a)
    for d in (self.d_a, self.d_b):
      d.requires_grad_(False)
    self.opt_g.zero_grad()
    loss = 0.0
    if self.lambda_identity > 0:
      w = self.lam * self.lambda_identity
      loss = (
        nn.functional.l1_loss(self.g_a(real_b), real_b) * w
        + nn.functional.l1_loss(self.g_b(real_a), real_a) * w
      )
    loss = (
      loss
      + self.gan(self.d_a(fake_b), True)
      + self.gan(self.d_b(fake_a), True)
      + nn.functional.l1_loss(rec_a, real_a) * self.lam
      + nn.functional.l1_loss(rec_b, real_b) * self.lam
    )
    loss.backward()
    self.opt_g.step()
    for d in (self.d_a, self.d_b):
      d.requires_grad_(True)
    self.opt_d.zero_grad()
    self.backward_d(self.d_a, real_b, self.pool_b.query(fake_b))
    self.backward_d(self.d_b, real_a, self.pool_a.query(fake_a))
    self.opt_d.step()


class Pix2Pix:
  """`Pix2PixModel` reduced to what one training iteration does (official defaults:
  U-Net with batch norm and dropout, the conditional basic critic with batch norm on
  (A, B), vanilla GAN, L1 × 100, no pool)."""

  def __init__(self, ngf: int, ndf: int, num_downs: int, dropout: bool):
    from make_pix2pix_fixtures import NLayerDiscriminator as BatchNormCritic  # noqa: E402  pylint: disable=g-import-not-at-top
    from make_pix2pix_fixtures import UnetGenerator  # noqa: E402  pylint: disable=g-import-not-at-top

    self.g = init_normal(UnetGenerator(3, 3, num_downs, ngf, 'batch', dropout))
    self.d = init_normal(BatchNormCritic(6, ndf, 3, 'batch'))
    self.opt_g = torch.optim.Adam(self.g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    self.opt_d = torch.optim.Adam(self.d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    self.lambda_l1 = 100.0

  @staticmethod
  def gan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.full_like(pred, 1.0 if real else 0.0)
    return nn.functional.binary_cross_entropy_with_logits(pred, target)

  def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> None:
    fake_b = self.g(real_a)
    self.d.requires_grad_(True)
    self.opt_d.zero_grad()
    fake_ab = torch.cat((real_a, fake_b), 1)
    loss_d = 0.5 * (
      self.gan(self.d(fake_ab.detach()), False)
      + self.gan(self.d(torch.cat((real_a, real_b), 1)), True)
    )
    loss_d.backward()
    self.opt_d.step()
    self.d.requires_grad_(False)
    self.opt_g.zero_grad()
    loss_g = (
      self.gan(self.d(fake_ab), True)
      + nn.functional.l1_loss(fake_b, real_b) * self.lambda_l1
    )
    loss_g.backward()
    self.opt_g.step()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument(
    '--model',
    default='cycle_gan',
    choices=('cycle_gan', 'pix2pix'),
    help="The official --model whose iteration is timed (pix2pix: --netG's U-Net).",
  )
  parser.add_argument(
    '--netG', default='unet_256', help='pix2pix only: unet_256 | unet_128.'
  )
  parser.add_argument('--no_dropout', action='store_true', help='pix2pix only.')
  parser.add_argument('--crop_size', type=int, default=128)
  parser.add_argument('--batch_size', type=int, default=1)
  parser.add_argument('--ngf', type=int, default=64)
  parser.add_argument('--ndf', type=int, default=64)
  parser.add_argument('--blocks', type=int, default=9)
  parser.add_argument('--pool_size', type=int, default=50)
  parser.add_argument('--lambda_identity', type=float, default=0.5)
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--threads', type=int, default=0, help='0: torch default.')
  parser.add_argument(
    '--serve',
    action='store_true',
    help="After warm-up, run one iteration per 'step' line on stdin and "
    'print its seconds (benchmarks/paired.py).',
  )
  parser.add_argument(
    '--dtype',
    default='float32',
    choices=('float32', 'bfloat16'),
    help='bfloat16: the iteration under torch.autocast (bfloat16), '
    'float32 parameters and optimiser, as our model.dtype does.',
  )
  parser.add_argument(
    '--device',
    default='cpu',
    choices=('cpu', 'cuda'),
    help='cuda: on the GPU (cuDNN defaults, TF32 convolutions as '
    'PyTorch enables them by default, as XLA does).',
  )
  args = parser.parse_args()
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  random.seed(0)
  if args.model == 'pix2pix':
    num_downs = {'unet_128': 7, 'unet_256': 8}[args.netG]
    model = Pix2Pix(args.ngf, args.ndf, num_downs, not args.no_dropout)
    nets = (model.g, model.d)
  else:
    model = CycleGAN(
      args.ngf, args.ndf, args.blocks, args.pool_size, args.lambda_identity
    )
    nets = (model.g_a, model.g_b, model.d_a, model.d_b)
  device = torch.device(args.device)
  if args.device == 'cuda':
    for net in nets:
      net.to(device)  # In place: the optimisers keep the same (moved) parameters.
  shape = (args.batch_size, 3, args.crop_size, args.crop_size)
  real_a = (torch.rand(shape) * 2 - 1).to(device)
  real_b = (torch.rand(shape) * 2 - 1).to(device)
  autocast = torch.autocast(
    args.device, dtype=torch.bfloat16, enabled=args.dtype == 'bfloat16'
  )
  sync = torch.cuda.synchronize if args.device == 'cuda' else lambda: None
  for _ in range(args.warmup):
    with autocast:
      model.step(real_a, real_b)
  sync()
  if args.serve:
    from paired import serve_steps  # noqa: E402  pylint: disable=g-import-not-at-top

    def one_step() -> None:
      with autocast:
        model.step(real_a, real_b)
      sync()

    serve_steps(one_step)
    return
  times = []
  for _ in range(args.steps):
    t = time.perf_counter()
    with autocast:
      model.step(real_a, real_b)
    sync()
    times.append(time.perf_counter() - t)
  median = statistics.median(times)
  print(
    json.dumps(
      {
        'implementation': f'pytorch {torch.__version__} (reference iteration)',
        'model': args.model,
        **(
          {'netG': args.netG, 'dropout': not args.no_dropout}
          if args.model == 'pix2pix'
          else {}
        ),
        'device': (torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'),
        'threads': torch.get_num_threads(),
        'dtype': args.dtype,
        'crop_size': args.crop_size,
        'batch_size': args.batch_size,
        'ngf': args.ngf,
        'ndf': args.ndf,
        **(
          {
            'blocks': args.blocks,
            'pool_size': args.pool_size,
            'lambda_identity': args.lambda_identity,
          }
          if args.model == 'cycle_gan'
          else {}
        ),
        'step_s_median': round(median, 4),
        'step_s_min': round(min(times), 4),
        'step_s_max': round(max(times), 4),
        'pairs_per_s': round(args.batch_size / median, 3),
      }
    )
  )


if __name__ == '__main__':
  main()
