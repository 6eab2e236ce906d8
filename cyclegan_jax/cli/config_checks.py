"""Every config field checked in one place, before JAX, TensorFlow or Orbax see it.

`validate(config)` raises a ValueError whose message is one line naming the field, the
value and what is allowed, e.g.

  config.optim.lr=-1.0: must be a finite number > 0.

Every entry point (training, evaluation, the ablation runner) calls it on the config it
loaded. The rules cover every field of configs/default.py (`RULES`), plus relations
between fields: crop_size <= load_size where the preprocessing crops, a crop large
enough for the critic to have an output, equal channels in both domains when the
identity loss is on, and a paired source for dataset_mode='aligned'. Imports no JAX, so it is cheap to call early.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import ml_collections

from cyclegan_jax import methods
from cyclegan_jax.data import synthetic
from cyclegan_jax.nets import spec

PREPROCESS_MODES = ('resize_and_crop', 'crop', 'scale_width_and_crop', 'none')
DTYPES = ('float32', 'bfloat16')
GAN_MODES = ('lsgan', 'vanilla')
DATASET_MODES = ('unaligned', 'aligned')
GRANULARITIES = ('epoch', 'step')
LR_BATCH_SCALINGS = ('none', 'linear', 'sqrt')
CHANNELS = (1, 3)  # Grayscale or RGB images (model.input_nc / model.output_nc).
AUGMENT_OPERATIONS = ('color', 'translation', 'cutout')  # diffaugment.POLICIES.
EVAL_SPLITS = ('test', 'val')  # config.eval.split: what evaluation scores.
_SEED_LIMIT = 2**31  # TF's stateless seeds and JAX keys both take it.


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return (
    isinstance(value, (int, float))
    and not isinstance(value, bool)
    and math.isfinite(value)
  )


def _int_at_least(low: int) -> Callable[[Any], str | None]:
  def check(value):
    if not _is_int(value) or value < low:
      return f'must be an integer >= {low}'
    return None

  return check


def _int_in(low: int, high: int) -> Callable[[Any], str | None]:
  def check(value):
    if not _is_int(value) or not low <= value < high:
      return f'must be an integer in [{low}, {high})'
    return None

  return check


def _int_minus_one_or_at_least(low: int, meaning: str) -> Callable[[Any], str | None]:
  def check(value):
    if not _is_int(value) or (value != -1 and value < low):
      return f'must be -1 ({meaning}) or an integer >= {low}'
    return None

  return check


def _number(
  *, low: float, low_inclusive: bool = True, high: float | None = None
) -> Callable[[Any], str | None]:
  def check(value):
    ok = _is_number(value) and (value >= low if low_inclusive else value > low)
    if high is not None:
      ok = ok and value < high
    if ok:
      return None
    bound = f'>= {low:g}' if low_inclusive else f'> {low:g}'
    if high is not None:
      return f'must be a number in [{low:g}, {high:g})'
    return f'must be a finite number {bound}'

  return check


def _one_of(options: tuple[str, ...]) -> Callable[[Any], str | None]:
  def check(value):
    if value not in options:
      return 'must be one of ' + ', '.join(repr(o) for o in options)
    return None

  return check


def _bool(value: Any) -> str | None:
  return None if isinstance(value, bool) else 'must be True or False'


def _any_int(value: Any) -> str | None:
  return None if _is_int(value) else 'must be an integer'


def _dataset(value: Any) -> str | None:
  if not isinstance(value, str) or not value.strip():
    return (
      "must be a TFDS name (e.g. 'cycle_gan/horse2zebra'), 'folder:PATH' or "
      "'synthetic:NAME'"
    )
  if value.startswith('folder:') and not value[len('folder:') :].strip():
    return "'folder:' needs a path, e.g. 'folder:/data/horse2zebra'"
  if value.startswith('synthetic:') and value[len('synthetic:') :] not in synthetic.TASKS:
    return 'the synthetic sources are ' + ', '.join(
      f"'synthetic:{t}'" for t in synthetic.TASKS
    )
  return None


def _augment_policy(value: Any) -> str | None:
  allowed = "must be '' (off) or a comma list of distinct operations among " + ', '.join(
    repr(o) for o in AUGMENT_OPERATIONS
  )
  if not isinstance(value, str):
    return allowed
  if not value.strip():
    return None
  names = [name.strip() for name in value.split(',')]
  if any(n not in AUGMENT_OPERATIONS for n in names) or len(set(names)) != len(names):
    return allowed
  return None


def _channels(value: Any) -> str | None:
  return None if value in CHANNELS and _is_int(value) else 'must be 1 or 3'


def _optional_str(value: Any) -> str | None:
  return (
    None
    if value is None or (isinstance(value, str) and value)
    else ('must be a folder path or None (the TFDS default)')
  )


def _nce_layers(value: Any) -> str | None:
  try:
    layers = [int(t) for t in str(value).split(',')]
  except ValueError:
    layers = []
  if not isinstance(value, str) or not layers or layers != sorted(set(layers)):
    return "must be increasing layer indices in a string, such as '0,4,8,12,16'"
  if layers[0] < 0:
    return 'must be layer indices >= 0'
  return None


# Field -> check returning None when the value is allowed, else what is allowed.
RULES: dict[str, Callable[[Any], str | None]] = {
  'method': lambda v: _one_of(tuple(methods.METHODS))(v),  # Read when checked.
  'direction': _one_of(('AtoB', 'BtoA')),  # As methods.base.DIRECTIONS.
  'seed': _int_in(0, _SEED_LIMIT),
  'dataset': _dataset,
  'dataset_mode': _one_of(DATASET_MODES),
  'data_dir': _optional_str,
  'preprocess': _one_of(PREPROCESS_MODES),
  'load_size': _int_at_least(1),
  'crop_size': _int_at_least(1),
  'no_flip': _bool,
  'shuffle_buffer_size': _any_int,  # <= 0: the whole split.
  'cache': _bool,
  'cache_max_gb': _number(low=0.0),
  'max_image_side': _int_at_least(1),
  'batch_size': _int_at_least(1),
  'pool_size': _int_at_least(0),
  'num_epochs': _int_at_least(0),
  'num_epochs_decay': _int_at_least(0),
  'num_train_steps': _int_minus_one_or_at_least(1, 'use the epochs'),
  'lr_schedule_granularity': _one_of(GRANULARITIES),
  'model.netG': _one_of(spec.NET_G),
  'model.ngf': _int_at_least(1),
  'model.norm': _one_of(spec.NORM_G_MODES),
  'model.use_dropout': _bool,
  'model.netD': _one_of(spec.NET_D),
  'model.ndf': _int_at_least(1),
  'model.n_layers_D': _int_at_least(1),
  'model.dtype': _one_of(DTYPES),
  'model.spectral_norm_D': _bool,
  'model.upsample': _one_of(spec.UPSAMPLE_MODES),
  'model.downsample': _one_of(spec.DOWNSAMPLE_MODES),
  'model.head': _one_of(spec.HEAD_MODES),
  'model.norm_D': _one_of(spec.NORM_D_MODES),
  'ema.decay': _number(low=0.0, high=1.0),
  'ema.start_step': _int_at_least(0),
  'model.remat': _bool,
  'model.conv_impl': _one_of(spec.CONV_IMPLS),
  'model.input_nc': _channels,
  'model.output_nc': _channels,
  'loss.gan_mode': _one_of(GAN_MODES),
  'loss.lambda_gan': _number(low=0.0),
  'loss.lambda_A': _number(low=0.0),
  'loss.lambda_B': _number(low=0.0),
  'loss.lambda_identity': _number(low=0.0),
  'loss.identity_skips_curve': _bool,
  'loss.lambda_L1': _number(low=0.0),
  'loss.r1_gamma': _number(low=0.0),
  'loss.lambda_swd': _number(low=0.0),
  'loss.swd_projections': _int_at_least(1),
  'loss.swd_samples': _int_at_least(2),
  'loss.swd_bank': _int_at_least(0),
  'optim.lr': _number(low=0.0, low_inclusive=False),
  'optim.beta1': _number(low=0.0, high=1.0),
  'optim.beta2': _number(low=0.0, high=1.0),
  'optim.lr_D_scale': _number(low=0.0, low_inclusive=False),
  'optim.lr_batch_scaling': _one_of(LR_BATCH_SCALINGS),
  'augment.policy': _augment_policy,
  'log_every_steps': _int_at_least(1),
  'sample_every_steps': _int_at_least(1),
  'num_sample_images': _int_at_least(1),
  'checkpoint_every_steps': _int_at_least(1),
  'keep_checkpoints': lambda v: (
    None
    if _is_int(v) and v >= 0
    else ('must be an integer >= 1 (the newest checkpoints kept) or 0 (keep all)')
  ),
  'eval.max_images': _int_minus_one_or_at_least(1, 'all'),
  'eval.step': _int_at_least(-1),
  'eval.weights': _one_of(('auto', 'ema', 'raw')),  # As checkpoints.WEIGHTS.
  'eval.inception_weights': lambda v: (
    None
    if v is None or (isinstance(v, str) and v)
    else 'must be a .pth file path or None (then '
    '$CYCLEGAN_JAX_INCEPTION_WEIGHTS, or FID/KID skipped)'
  ),
  'eval.fid_reference': _one_of(('test', 'train')),
  'eval.model_eval': _bool,
  # CUT / FastCUT (methods/cut.py).
  'model.downsample_D': _one_of(spec.DOWNSAMPLE_D_MODES),
  'cut.lambda_NCE': _number(low=0.0),
  'cut.nce_idt': _bool,
  'cut.flip_equivariance': _bool,
  'cut.nce_layers': _nce_layers,
  'cut.nce_T': _number(low=0.0, low_inclusive=False),
  'cut.num_patches': _int_at_least(1),
  'cut.netF': _one_of(('mlp_sample', 'sample')),
  'cut.netF_nc': _int_at_least(1),
  'cut.nce_includes_all_negatives_from_minibatch': _bool,
  'cut.init_type': _one_of(('xavier', 'normal')),
  'cut.init_gain': _number(low=0.0, low_inclusive=False),
  # Baselines (simgan, feature_gan, bigan).
  'baseline.lambda_content': _number(low=0.0),
  'baseline.vgg_weights': lambda v: (
    None
    if v is None or (isinstance(v, str) and v)
    else 'must be a .pth file path or None (then $CYCLEGAN_JAX_VGG_WEIGHTS)'
  ),
  'eval.split': _one_of(EVAL_SPLITS),
  'cogan.nz': _int_at_least(1),
  'cogan.noise': _one_of(('uniform', 'normal')),
  'cogan.ngf': _int_at_least(1),
  'cogan.ndf': _int_at_least(1),
  'cogan.max_filters': _int_at_least(1),
  'cogan.unshared_g': _int_at_least(1),
  'cogan.unshared_d': _int_at_least(1),
  'cogan.weight_decay': _number(low=0.0),
  'cogan.invert_steps': _int_at_least(1),
  'cogan.invert_lr': _number(low=0.0, low_inclusive=False),
  'cogan.invert_restarts': _int_at_least(1),
}


# Options taken out because no validation table showed them helping: (field, the
# removed value, or None for the whole field) -> what to use instead. Old configs and
# commands that name one get this in one line rather than a bare "unknown" error.
REMOVED: dict[tuple[str, Any], str] = {
  ('model.upsample', 'subpixel'): "use 'resize_conv' (no checkerboard) or 'transpose'",
  ('model.head', 'residual'): "use 'curve' (its successor) or 'tanh'",
  ('loss.swd_patch_size', None): 'the colour pull (loss.lambda_swd) compares single '
  'colours; drop the field',
  ('loss.swd_levels', None): 'the colour pull compares the images at full size only; '
  'drop the field',
  ('loss.swd_power', None): 'the colour pull is the plain (power 1) transport '
  'distance; drop the field',
}


# The value at which a removed field did what the code now always does: a finished run
# saved with it trained as today's code would, so resuming or re-reading it is safe.
REMOVED_NEUTRAL: dict[str, Any] = {
  'loss.swd_patch_size': 1,
  'loss.swd_levels': 1,
  'loss.swd_power': 1,
}


def removed(config: Any) -> tuple[str, Any, str] | None:
  """(field, value, what to use instead) of the first removed option `config` (a
  ConfigDict or a saved config's dict) names, or None."""
  for (field, gone), advice in REMOVED.items():
    try:
      value = _get(config, field)
    except (KeyError, AttributeError, TypeError):
      continue
    if gone is None or value == gone:
      return field, value, advice
  return None


def removed_flag(argv: Sequence[str]) -> str | None:
  """The one-line error for a `--config.FIELD` flag that names a removed field, or
  None (a removed value is refused by `validate` once the flags are parsed)."""
  for arg in argv:
    name = arg.lstrip('-').split('=', 1)[0]
    if arg.startswith('-') and name.startswith('config.'):
      advice = REMOVED.get((name[len('config.') :], None))
      if advice is not None:
        return f'--{name} was removed: {advice}'
  return None


def _get(config: Any, field: str) -> Any:
  value = config
  for part in field.split('.'):
    value = value[part]
  return value


def _refuse(field: str, value: Any, allowed: str) -> ValueError:
  return ValueError(f'config.{field}={value!r}: {allowed}.')


def critic_output_size(size: int, num_layers: int) -> int:
  """The PatchGAN's output side for an input side `size` (0: empty).

  `num_layers` stride-2 4×4 convs (padding 1), then two stride-1 4×4 convs (padding 1),
  as models.PatchDiscriminator builds it.
  """
  for _ in range(num_layers):
    size = (size - 2) // 2 + 1 if size >= 2 else 0
  return max(0, size - 2)


def smallest_critic_input(num_layers: int) -> int:
  """The smallest input side that gives the critic a non-empty output."""
  size = 1
  while critic_output_size(size, num_layers) < 1:
    size += 1
  return size


def critic_layers(config: Any) -> int:
  """The critic's stride-2 stages: 3 for 'basic', else model.n_layers_D."""
  return 3 if config.model.netD == 'basic' else config.model.n_layers_D


def validate(config: ml_collections.ConfigDict | ml_collections.FrozenConfigDict) -> None:
  """Raises ValueError (one line: field, value, what is allowed) on the first bad field.

  Fields of configs/default.py missing from `config` are not required here (configs
  of converted weights may lack some); fields with no rule are left alone. A removed
  option (`REMOVED`) is named as such, with what to use instead.
  """
  found = removed(config)
  if found is not None:
    field, value, advice = found
    raise ValueError(f'config.{field}={value!r} was removed: {advice}.')
  for field, check in RULES.items():
    try:
      value = _get(config, field)
    except (KeyError, AttributeError):
      continue
    allowed = check(value)
    if allowed is not None:
      raise _refuse(field, value, allowed)

  if (
    config.preprocess in ('resize_and_crop', 'scale_width_and_crop')
    and config.crop_size > config.load_size
  ):
    raise _refuse(
      'crop_size',
      config.crop_size,
      f'must be <= load_size ({config.load_size}) for '
      f'preprocess={config.preprocess!r}, which resizes to load_size then '
      'crops',
    )
  if config.get('dataset_mode') == 'aligned' and not str(config.dataset).startswith(
    ('folder:', 'synthetic:')
  ):
    raise _refuse(
      'dataset_mode',
      'aligned',
      f'needs pairs, and {config.dataset!r} is a TFDS cycle_gan set (unpaired): use '
      "folder:PATH or synthetic:NAME, or dataset_mode='unaligned'",
    )
  eval_split = config.get('eval', {}).get('split', 'test')
  if eval_split == 'val' and (
    config.get('dataset_mode') == 'aligned'
    or not str(config.dataset).startswith(('folder:', 'synthetic:'))
  ):
    raise _refuse(
      'eval.split',
      'val',
      'needs valA/ and valB/ beside testA/ and testB/, which only unpaired folder: and '
      "synthetic: datasets have; use eval.split='test'",
    )
  if config.num_train_steps == -1 and config.num_epochs + config.num_epochs_decay < 1:
    raise _refuse(
      'num_epochs',
      config.num_epochs,
      'num_epochs + num_epochs_decay must be >= 1 when num_train_steps is -1 '
      '(nothing to train)',
    )
  # The official code asserts this too: identity maps each domain to itself.
  input_nc = config.model.get('input_nc', 3)
  output_nc = config.model.get('output_nc', 3)
  if config.loss.lambda_identity > 0 and input_nc != output_nc:
    raise _refuse(
      'loss.lambda_identity',
      config.loss.lambda_identity,
      'the identity loss feeds each generator images of its output domain, so it '
      f'needs model.input_nc == model.output_nc (here {input_nc} and {output_nc}); '
      'set --config.loss.lambda_identity=0',
    )
  if config.loss.get('identity_skips_curve') and not spec.head_finish(
    config.model.get('head', 'tanh')
  ):
    raise _refuse(
      'loss.identity_skips_curve',
      True,
      "only the 'curve' and 'colour_skip' heads have a colour map for the identity "
      'loss to skip; set --config.model.head=colour_skip or drop the override',
    )
  if (
    config.get('method') == 'simgan'
    and input_nc != output_nc
    and config.get('baseline', {}).get('lambda_content', 0.0) > 0
  ):
    raise _refuse(
      'baseline.lambda_content',
      config.baseline.lambda_content,
      "simgan's pixel term compares G(x) with x, so it needs model.input_nc == "
      f'model.output_nc (here {input_nc} and {output_nc}); use method=feature_gan '
      'or set --config.baseline.lambda_content=0',
    )
  if config.get('method') == 'cut':
    _check_cut(config)
  if (
    spec.is_unet(config.model.netG)
    and config.crop_size % 2 ** spec.UNET_DOWNS[config.model.netG]
  ):
    factor = 2 ** spec.UNET_DOWNS[config.model.netG]
    raise _refuse(
      'crop_size',
      config.crop_size,
      f'must be a multiple of {factor} for {config.model.netG}, which halves it '
      f'{spec.UNET_DOWNS[config.model.netG]} times (unet_128 takes multiples of 128)',
    )
  if config.get('method') == 'cogan':
    _check_cogan(config)
    return  # Its own critics, not the PatchGAN.
  if config.model.netD == 'pixel':
    if config.model.get('downsample_D', 'stride') != 'stride':
      raise _refuse(
        'model.downsample_D',
        config.model.downsample_D,
        "the PixelGAN does not downsample; use netD='basic' or 'n_layers' with it",
      )
    return  # 1×1 convs: any size gives an output.
  layers = critic_layers(config)
  smallest = smallest_critic_input(layers)
  if config.crop_size < smallest:
    raise _refuse(
      'crop_size',
      config.crop_size,
      f'must be >= {smallest} for the {layers}-layer PatchGAN critic (its '
      'output would be empty); use a larger crop or a shallower critic '
      '(--config.model.netD=n_layers --config.model.n_layers_D=2)',
    )


def _check_cut(config: Any) -> None:
  """CUT's relations: a ResNet generator (its encoder's features) and no image pool."""
  if spec.is_unet(config.model.netG):
    raise _refuse(
      'model.netG',
      config.model.netG,
      "CUT contrasts the features of a ResNet generator's encoder: use "
      'resnet_9blocks or resnet_6blocks (configs/cut.py)',
    )
  if config.pool_size:
    raise _refuse(
      'pool_size',
      config.pool_size,
      'CUT keeps no image pool (the official --pool_size 0): pass '
      '--config.pool_size=0, or start from configs/cut.py',
    )


def _check_cogan(config: Any) -> None:
  """CoGAN's networks double from 4×4 to crop_size, and each side keeps a tied part."""
  size = config.crop_size
  if size < 8 or size & (size - 1):
    raise _refuse(
      'crop_size',
      size,
      'must be a power of two >= 8 for method=cogan (its generators double a 4×4 map '
      'up to it); e.g. 64 or 128',
    )
  doublings = int(math.log2(size // 4))
  # Layers: the generator's fc, its ×2 stages and image conv; the critic's /2 stages
  # down to 2×2, fc and logit (nets/cogan.py).
  for field, layers in (('unshared_g', doublings + 2), ('unshared_d', doublings + 3)):
    value = config.cogan[field]
    if value >= layers:
      raise _refuse(
        f'cogan.{field}',
        value,
        f'must be < {layers}, the layers at crop_size {size} (at least one stays tied)',
      )
