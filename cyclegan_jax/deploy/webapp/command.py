r"""Serves a local page that translates images with a trained or converted checkpoint.

  python -m cyclegan_jax.app --workdir=DIR [--port=8000] [--step=N] \
      [--weights=auto|ema|raw] [--tile=SIZE [--overlap=PIXELS]] [--eval] \
      [--examples=FOLDER] [--host=127.0.0.1] [--max_upload_mb=64]

(also `python -m cyclegan_jax.deploy.webapp`, and `cyclegan-jax-app` once installed).

Open the printed address in a browser: upload an image or pick a test image, choose a
direction (those the checkpoint holds), and see the input and its translation side by
side, the output downloadable at full size. The model is loaded once, at start, and
every image is translated as `python -m cyclegan_jax.deploy.translate` would translate
that file (same weights, test mode and tiling flags; large images are tiled when they
would not fit). It listens on 127.0.0.1 only unless --host says otherwise. Ctrl-C (or
SIGTERM) stops it.
"""

from __future__ import annotations

import signal
from typing import Sequence

from absl import flags
from absl import logging

from cyclegan_jax.cli import app
from cyclegan_jax.cli import flags as cli_flags
from cyclegan_jax.deploy.webapp import demo as demo_lib
from cyclegan_jax.deploy.webapp import server as server_lib
from cyclegan_jax.train import checkpoints


def define_flags() -> None:
  """The command's flags (defined by its entry point only, never at import)."""
  cli_flags.define_workdir('Training workdir or converted weights.')
  cli_flags.define_step()
  cli_flags.define_weights(checkpoints.WEIGHTS)
  cli_flags.define_tiling()
  cli_flags.define_model_eval()
  flags.DEFINE_string(
    'examples',
    None,
    "A folder of test images to offer (default: the checkpoint's own test split, "
    'where it is a folder or a synthetic task).',
  )
  flags.DEFINE_string(
    'host',
    '127.0.0.1',
    'Address to listen on; anything but a loopback address lets other machines in.',
  )
  flags.DEFINE_integer(
    'port', 8000, 'Port to listen on (0: any free one).', lower_bound=0
  )
  flags.DEFINE_integer(
    'max_upload_mb', 64, 'Largest image file accepted, in MB.', lower_bound=1
  )


def _interrupt(signum, frame) -> None:
  del signum, frame
  raise KeyboardInterrupt


def serve(server: server_lib.DemoServer) -> None:
  """Serves until Ctrl-C or SIGTERM (how a service manager or `kill` stops it)."""
  signal.signal(signal.SIGTERM, _interrupt)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass  # The way to stop it: a normal end.
  finally:
    server.server_close()


def main(argv: Sequence[str]) -> app.Outcome:
  app.no_arguments(argv)
  f = flags.FLAGS
  demo = demo_lib.load(
    f.workdir,
    step=f.step,
    weights=f.weights,
    tile=f.tile,
    overlap=f.overlap,
    model_eval=f.eval,
    examples_folder=f.examples,
  )
  server = server_lib.make_server(demo, f.host, f.port, f.max_upload_mb * 1_000_000)
  if not server.loopback:
    logging.warning(
      'Listening on %s: anyone who can reach this machine can use the app and read '
      'its test images.',
      f.host,
    )
  directions = ', '.join(demo.directions)
  print(
    f'Serving step {demo.restored.step} of {f.workdir} ({directions}) at {server.url} '
    '(Ctrl-C to stop).',
    flush=True,
  )
  serve(server)
  return app.Outcome(
    f'Stopped after {demo.served} translations.',
    {
      'command': 'app',
      'workdir': f.workdir,
      'step': demo.restored.step,
      'url': server.url,
      'translations': demo.served,
    },
  )


def cli() -> None:
  """`cyclegan-jax-app` and `python -m cyclegan_jax.deploy.webapp`."""
  app.run(main, prog='app', define_flags=define_flags)


if __name__ == '__main__':
  cli()
