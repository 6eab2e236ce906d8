"""`cyclegan_jax.main` on a disk that fills up: every file write past 1 KiB fails.

  python tests/full_disk_main.py --full_from_step=4 --config=... --workdir=...

From the save of checkpoint `--full_from_step` on, the process may write no file
beyond 1 KiB (RLIMIT_FSIZE: the write fails with EFBIG, as it would with ENOSPC), so
the checkpoint's arrays and the event files fail as on a full disk. Every other flag is
`cyclegan_jax.main`'s.
"""

import resource
import signal

from absl import flags

from cyclegan_jax import main
from cyclegan_jax.train import checkpoints

flags.DEFINE_integer('full_from_step', 4, 'The first checkpoint step that fails.')

_save = checkpoints.save


def _save_on_a_full_disk(manager, step, **kwargs):
  if step >= flags.FLAGS.full_from_step:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # A failed write, not a killed process.
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))
  return _save(manager, step, **kwargs)


if __name__ == '__main__':
  checkpoints.save = _save_on_a_full_disk
  main.cli()
