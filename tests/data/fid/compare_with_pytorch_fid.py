"""pytorch-fid's own FID (and torch-fidelity's KID) of two folders, on any weights file.

pytorch-fid 0.3.0's command always downloads its weights; this runs its functions with
the network loaded from WEIGHTS instead (a `.pth` in its key layout: the release file or
random weights from tests/fid_fixtures.py), to compare with `python -m cyclegan_jax.evaluation.fid`.
Needs torch (see make_fixtures.py for the venv):

  /tmp/tv/bin/python tests/data/fid/compare_with_pytorch_fid.py WEIGHTS FOLDER_A FOLDER_B

Batch size 1, so that folders of mixed image sizes work (pytorch-fid stacks a batch).
Prints one JSON line: fid, kid_mean, kid_std, image counts.
"""

import json
import pathlib
import sys
import types

import numpy as np

sys.modules.setdefault(
  'torchvision._meta_registrations', types.ModuleType('torchvision._meta_registrations')
)

from pytorch_fid import fid_score  # pylint: disable=g-import-not-at-top,wrong-import-position
from pytorch_fid import inception as pf_inception  # pylint: disable=g-import-not-at-top
import torch  # pylint: disable=g-import-not-at-top,wrong-import-position
from torch_fidelity import metric_kid  # pylint: disable=g-import-not-at-top


def main(weights: str, folder_a: str, folder_b: str) -> None:
  state_dict = torch.load(weights, weights_only=True)
  pf_inception.load_state_dict_from_url = lambda *a, **k: state_dict
  model = pf_inception.InceptionV3([3]).eval()
  feats = []
  for folder in (folder_a, folder_b):
    # As fid_score.compute_statistics_of_path lists a folder.
    path = pathlib.Path(folder)
    files = sorted(f for ext in fid_score.IMAGE_EXTENSIONS for f in path.glob(f'*.{ext}'))
    with torch.no_grad():
      feats.append(
        fid_score.get_activations(
          files, model, batch_size=1, dims=2048, device='cpu', num_workers=0
        )
      )
  (m1, s1), (m2, s2) = [(np.mean(f, axis=0), np.cov(f, rowvar=False)) for f in feats]
  size = min(1000, len(feats[0]), len(feats[1]))
  kid = metric_kid.kid_features_to_metric(
    torch.from_numpy(feats[0].astype(np.float32)),
    torch.from_numpy(feats[1].astype(np.float32)),
    kid_subset_size=size,
    verbose=False,
  )
  print(
    json.dumps(
      {
        'fid': float(fid_score.calculate_frechet_distance(m1, s1, m2, s2)),
        'kid_mean': kid[metric_kid.KEY_METRIC_KID_MEAN],
        'kid_std': kid[metric_kid.KEY_METRIC_KID_STD],
        'images_a': len(feats[0]),
        'images_b': len(feats[1]),
      }
    )
  )


if __name__ == '__main__':
  main(*sys.argv[1:])
