"""Writes tests/data/vgg16_relu4_2.npz: torchvision VGG-16's relu4_2 on fixed inputs.

  /work/torchvenv/bin/python tests/data/make_vgg_fixture.py   (from the repository root)

torchvision's `vgg16().features[:21]` is rebuilt from torch.nn layers in its
`make_layers` order (torchvision itself is not needed), loaded with the seeded weights
of tests/vgg_fixtures.py, and run on `fixture_input()` mapped to [0, 1] and normalised
with the ImageNet mean and std, as torchvision's models expect.
"""

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.getcwd())
from tests import vgg_fixtures  # noqa: E402

CFG = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512]  # Up to conv4_2.


def features() -> torch.nn.Sequential:
  layers, in_channels = [], 3
  for v in CFG:
    if v == 'M':
      layers.append(torch.nn.MaxPool2d(kernel_size=2, stride=2))
    else:
      layers += [torch.nn.Conv2d(in_channels, v, 3, padding=1), torch.nn.ReLU(True)]
      in_channels = v
  return torch.nn.Sequential(*layers)


def main() -> None:
  net = features()
  state = {
    f'{k}': torch.from_numpy(v) for k, v in vgg_fixtures.random_state_dict().items()
  }
  net.load_state_dict({k.removeprefix('features.'): v for k, v in state.items()})
  x = vgg_fixtures.fixture_input()
  t = torch.from_numpy(x).permute(0, 3, 1, 2)
  mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
  std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
  with torch.no_grad():
    y = net(((t + 1) / 2 - mean) / std)
  assert len(net) == 21
  np.savez_compressed(
    'tests/data/vgg16_relu4_2.npz',
    relu4_2=y.permute(0, 2, 3, 1).numpy(),
    torch_version=np.asarray(torch.__version__),
  )


if __name__ == '__main__':
  main()
