"""Can a critic tell a photo look's domain B from domain A? A critic trained alone.

  python benchmarks/critic_probe.py --look=tone [--norms=instance,none] [--steps=600] \
      [--lr=5e-4] [--objective=patch|image] [--every=100]

The recipe study's generators barely move from their input on the photo looks; this
asks whether the adversarial signal is there at all. One critic of the study's size
(`configs/study.py`: ndf 16, 70×70 PatchGAN) is trained alone, with the study's
optimiser (Adam, β1 0.5) and batch (1), to output 1 on train crops of domain B and 0 on
train crops of domain A (the LSGAN targets; `--objective=image` scores the mean logit of
each image instead of every patch). Every `--every` steps it prints one JSON line: the
mean logit on the held-out test crops of A and of B (64 px, top-left), and the share of
test crops it ranks correctly (logit of B above the median, of A below). A critic that
can see the look separates the two means; one that cannot leaves both near 0.5.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE)]

import jax  # noqa: E402  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # noqa: E402  # pylint: disable=g-import-not-at-top
import optax  # noqa: E402  # pylint: disable=g-import-not-at-top

from configs import study  # noqa: E402  # pylint: disable=g-import-not-at-top
from cyclegan_jax.nets import models  # noqa: E402  # pylint: disable=g-import-not-at-top
from cyclegan_jax.studies import photo_looks  # noqa: E402  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_string('look', 'tone', 'configs/study.py photo setting (a look).')
flags.DEFINE_list('norms', ['instance', 'none'], 'Critic norms (model.norm_D) to probe.')
flags.DEFINE_integer('steps', 600, 'Critic updates.')
flags.DEFINE_float('lr', 5e-4, "Adam's rate (the study's).")
flags.DEFINE_enum(
  'objective', 'patch', ['patch', 'image'], 'LSGAN on each patch or image.'
)
flags.DEFINE_integer('every', 100, 'Print a line every this many steps.')
flags.DEFINE_integer('crop', 64, 'Crop side (the study trains on 64 px crops).')
flags.DEFINE_integer('seed', 0, 'Initialisation and sampling seed.')


def probe(
  critic: models.PatchDiscriminator,
  data: dict[str, np.ndarray],
  *,
  steps: int,
  lr: float,
  objective: str,
  every: int,
  seed: int,
) -> list[dict[str, float]]:
  """Trains `critic` alone on data['trainA'] (target 0) vs data['trainB'] (target 1)."""
  params = critic.init(jax.random.key(seed), data['trainA'][:1])
  optimizer = optax.adam(lr, b1=0.5, b2=0.999)
  opt_state = optimizer.init(params)
  reduce = (lambda d: d) if objective == 'patch' else (lambda d: jnp.mean(d, (1, 2, 3)))

  def loss_fn(p, a, b):
    return jnp.mean((reduce(critic.apply(p, b)) - 1.0) ** 2) + jnp.mean(
      reduce(critic.apply(p, a)) ** 2
    )

  @jax.jit
  def update(p, s, a, b):
    loss, grads = jax.value_and_grad(loss_fn)(p, a, b)
    updates, s = optimizer.update(grads, s, p)
    return optax.apply_updates(p, updates), s, loss

  score = jax.jit(lambda p, x: jnp.mean(critic.apply(p, x), axis=(1, 2, 3)))
  rng = np.random.default_rng(seed)
  lines = []
  for step in range(1, steps + 1):
    a = data['trainA'][rng.integers(len(data['trainA']))][None]
    b = data['trainB'][rng.integers(len(data['trainB']))][None]
    params, opt_state, loss = update(params, opt_state, a, b)
    if step % every == 0 or step == steps:
      test_a = np.asarray(score(params, data['testA']))
      test_b = np.asarray(score(params, data['testB']))
      median = np.median(np.concatenate([test_a, test_b]))
      correct = (np.sum(test_a < median) + np.sum(test_b > median)) / (
        len(test_a) + len(test_b)
      )
      lines.append(
        {
          'step': step,
          'loss': round(float(loss), 4),
          'D_testA': round(float(test_a.mean()), 3),
          'D_testB': round(float(test_b.mean()), 3),
          'ranked_correctly': round(float(correct), 3),
        }
      )
  return lines


def main(argv):
  del argv
  config = study.get_config(FLAGS.look)
  root = config.dataset.removeprefix('folder:')
  data = {
    s: photo_looks.load_split(root, s, FLAGS.crop)
    for s in ('trainA', 'trainB', 'testA', 'testB')
  }
  for norm in FLAGS.norms:
    model = config.model.copy_and_resolve_references()
    with model.unlocked():
      model.norm_D = norm
    critic = models.discriminator_from_config(model)
    for line in probe(
      critic,
      data,
      steps=FLAGS.steps,
      lr=FLAGS.lr,
      objective=FLAGS.objective,
      every=FLAGS.every,
      seed=FLAGS.seed,
    ):
      print(json.dumps({'look': FLAGS.look, 'norm_D': norm, **line}), flush=True)


if __name__ == '__main__':
  app.run(main)
