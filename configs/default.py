"""The paper's CycleGAN settings (Zhu et al. 2017; the official code's defaults).

Train on horse2zebra at 256 px with the paper's schedule (100 + 100 epochs):

  python -m cyclegan_jax.main --config=configs/default.py --workdir=/tmp/h2z \
      --config.dataset=cycle_gan/horse2zebra

Every field below is a config override (`--config.FIELD=VALUE`); the config is locked,
so a misspelt key is an error. Dataset files in this folder start from `get_config()`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Returns the locked default config (the reference's `train.py` defaults)."""
  config = ml_collections.ConfigDict()
  config.method = 'cycle_gan'  # The training method (cyclegan_jax/methods/); --model.
  # 'AtoB' | 'BtoA': which side a one-way method (pix2pix) reads; the official
  # --direction. CycleGAN trains both ways and ignores it.
  config.direction = 'AtoB'

  # --- data -------------------------------------------------------------------------
  config.seed = 0  # Seeds parameters, data order, augmentation and the image pools.
  # TFDS name | 'folder:PATH' | 'synthetic:NAME'.
  config.dataset = 'cycle_gan/horse2zebra'
  # 'unaligned': two independent domains (CycleGAN's); 'aligned': pairs (pix2pix's),
  # a folder's A|B side-by-side images or trainA/trainB files of equal names.
  config.dataset_mode = 'unaligned'
  # TFDS data dir (None: default).
  config.data_dir = ml_collections.config_dict.placeholder(str)
  # 'resize_and_crop' | 'crop' | 'scale_width_and_crop' | 'none'.
  config.preprocess = 'resize_and_crop'
  config.load_size = 286  # Resize target before the random crop.
  config.crop_size = 256  # Training crop size.
  config.no_flip = False  # True disables the random horizontal flip.
  config.shuffle_buffer_size = 1000  # Per-domain shuffle buffer (images).
  config.cache = True  # Cache decoded images in memory when the source is small enough.
  # Per domain and process: larger decoded domains are not cached.
  config.cache_max_gb = 8.0
  # Folder images with a longer side are downscaled at decode.
  config.max_image_side = 4096
  config.batch_size = 1  # Global batch: image pairs per step over all devices and hosts.
  config.pool_size = 50  # Image pool size per device; 0 disables the pool.

  # --- schedule ---------------------------------------------------------------------
  config.num_epochs = 100  # Epochs at the initial learning rate (reference: n_epochs).
  # Epochs of linear decay afterwards (reference: n_epochs_decay).
  config.num_epochs_decay = 100
  config.num_train_steps = -1  # > 0: total steps, overriding the epochs (same shape).
  # 'epoch': the rate changes once per epoch, as the reference does (ends at lr/101);
  # 'step': the same line interpolated per step.
  config.lr_schedule_granularity = 'epoch'

  # --- model ------------------------------------------------------------------------
  config.model = ml_collections.ConfigDict()
  # 'resnet_9blocks' | 'resnet_6blocks' | 'unet_256' | 'unet_128'.
  config.model.netG = 'resnet_9blocks'
  config.model.ngf = 64  # Generator filters in the first conv layer.
  config.model.norm = 'instance'  # Generator normalisation: 'instance' | 'batch'.
  config.model.use_dropout = False  # Dropout 0.5 in the generator (official: U-Net).
  # 'basic' (70×70 PatchGAN) | 'n_layers' (uses n_layers_D) | 'pixel' (1×1 PixelGAN).
  config.model.netD = 'basic'
  config.model.ndf = 64  # Discriminator filters in the first conv layer.
  config.model.n_layers_D = 3  # Discriminator stride-2 stages when netD == 'n_layers'.
  # Compute dtype: 'float32' | 'bfloat16' (params stay float32).
  config.model.dtype = 'float32'
  config.model.spectral_norm_D = False  # Spectral norm of every critic conv weight.
  # Critic normalisation: 'instance' (paper's) | 'none' | 'batch' (pix2pix's).
  config.model.norm_D = 'instance'
  # Generator ×2 upsampling: 'transpose' (the paper's) | 'resize_conv' | 'blur' (CUT's).
  config.model.upsample = 'transpose'
  # Generator downsampling only: 'stride' (the paper's) | 'blur' (CUT's BlurPool).
  config.model.downsample = 'stride'
  # Generator output: 'tanh' (the paper's) | 'curve' (a change to the input, from 0).
  config.model.head = 'tanh'
  config.model.remat = False  # Recompute residual blocks in backward: less memory.
  config.model.conv_impl = 'auto'  # Conv forms: 'auto' (by backend)|'xla'|'cpu'|'gpu'.
  config.model.input_nc = 3  # Channels of domain A's images: 3 (RGB) or 1 (grayscale).
  config.model.output_nc = 3  # Channels of domain B's images: 3 (RGB) or 1 (grayscale).

  # --- loss -------------------------------------------------------------------------
  config.loss = ml_collections.ConfigDict()
  config.loss.gan_mode = 'lsgan'  # 'lsgan' (MSE) | 'vanilla' (BCE with logits).
  # Weight of the generators' adversarial terms (0: cycle alone).
  config.loss.lambda_gan = 1.0
  config.loss.lambda_A = 10.0  # Forward cycle weight, A -> B -> A (0 disables it).
  config.loss.lambda_B = 10.0  # Backward cycle weight, B -> A -> B (0 disables it).
  # Identity weight, relative to lambda_A / lambda_B (0 disables it).
  config.loss.lambda_identity = 0.5
  # The identity loss trains only the generator's convolutions, not its colour map
  # (the curve and colour_skip heads' `PixelCurve`), which it would pull to the identity.
  config.loss.identity_skips_curve = False
  config.loss.lambda_L1 = 100.0  # pix2pix: weight of |G(A) - B|₁ (0 disables it).
  config.loss.r1_gamma = 0.0  # R1 penalty γ/2·E‖∇D(real)‖² on the critics (0: off).
  # Sliced Wasserstein distance between each fake's colours and the real images' of its
  # domain, added to the generators' loss with this weight (0: off).
  config.loss.lambda_swd = 0.0
  config.loss.swd_projections = 64  # Random 1-D projections per step.
  config.loss.swd_samples = 1024  # Pixels per side the 1-D maps are estimated from.
  # Recent real and fake images (per device) compared along with the batch's, so that
  # the loss matches the domains' distributions rather than two images' (0: the batch).
  config.loss.swd_bank = 0

  # --- optimiser --------------------------------------------------------------------
  config.optim = ml_collections.ConfigDict()
  # Adam learning rate for both the generators and the discriminators.
  config.optim.lr = 2e-4
  config.optim.beta1 = 0.5  # Adam beta1.
  config.optim.beta2 = 0.999  # Adam beta2.
  config.optim.lr_D_scale = 1.0  # The critics' learning rate is lr × this (TTUR).
  # Both rates × batch_size ('linear') or × √batch_size ('sqrt'); 'none': as given.
  config.optim.lr_batch_scaling = 'none'

  # --- critics' augmentation --------------------------------------------------------
  config.augment = ml_collections.ConfigDict()
  # DiffAugment of every image a critic sees: '' (off) or a comma list of 'color',
  # 'translation', 'cutout' (applied in the list's order).
  config.augment.policy = ''

  # --- weight averaging -------------------------------------------------------------
  config.ema = ml_collections.ConfigDict()
  # Generators' weight EMA (e.g. 0.999) for eval, translate, samples, export; 0: off.
  config.ema.decay = 0.0
  config.ema.start_step = 0  # Before this step the EMA just copies the weights (warm-up).

  # --- logging and checkpoints ------------------------------------------------------
  config.log_every_steps = 100  # Scalar summaries (and the host sync that fetches them).
  config.sample_every_steps = 1000  # Image grids of fixed test images.
  config.num_sample_images = 4  # Test images per domain in the sample grids.
  config.checkpoint_every_steps = 1000  # Orbax checkpoint interval.
  config.keep_checkpoints = 3  # Newest checkpoints kept (older deleted); 0 keeps all.

  # --- evaluation -------------------------------------------------------------------
  config.eval = ml_collections.ConfigDict()
  config.eval.max_images = -1  # Test images per direction to evaluate (-1: all).
  config.eval.step = -1  # Checkpoint step to evaluate (-1: the latest).
  # 'auto' (ema when saved) | 'ema' | 'raw' generator weights.
  config.eval.weights = 'auto'
  # pytorch-fid's pt_inception-2015-12-05-6726825d.pth for FID/KID
  # (None: $CYCLEGAN_JAX_INCEPTION_WEIGHTS; neither: skipped).
  config.eval.inception_weights = ml_collections.config_dict.placeholder(str)
  # Real images FID/KID compare with: 'test' (the evaluated held-out split: test, or
  # val with eval.split='val') | 'train' split.
  config.eval.fid_reference = 'test'
  # Test-time networks of batch norm / dropout models: False is the official test.py's
  # default (the test batch's statistics, dropout on, seeded); True its --eval
  # (running statistics, no dropout).
  config.eval.model_eval = False

  # --- CUT / FastCUT (method 'cut'; configs/cut.py, configs/fastcut.py) -------------
  # The critic's downsampling: 'stride' (the paper's) | 'blur' (CUT's antialiased).
  config.model.downsample_D = 'stride'
  config.cut = ml_collections.ConfigDict()
  config.cut.lambda_NCE = 1.0  # PatchNCE weight (0: GAN alone); FastCUT: 10.
  config.cut.nce_idt = True  # Also NCE(G(b), b), averaged in; FastCUT: False.
  config.cut.flip_equivariance = False  # Flip G's input at random; FastCUT: True.
  # The official generator's `model` layer indices whose features are contrasted.
  config.cut.nce_layers = '0,4,8,12,16'
  config.cut.nce_T = 0.07  # Temperature of the contrastive softmax.
  config.cut.num_patches = 256  # Patch positions sampled per layer and step.
  config.cut.netF = 'mlp_sample'  # 'mlp_sample' (an MLP head per layer) | 'sample'.
  config.cut.netF_nc = 256  # The heads' width.
  # Negatives from every image of the batch rather than the query's own image.
  config.cut.nce_includes_all_negatives_from_minibatch = False
  # Every kernel of G, D and F: 'xavier' (CUT's) | 'normal' (N(0, gain)), × init_gain.
  config.cut.init_type = 'xavier'
  config.cut.init_gain = 0.02
  # --- baselines (simgan, feature_gan, bigan) --------------------------------------
  config.baseline = ml_collections.ConfigDict()
  # simgan / feature_gan: weight of the content term λ·‖x − G(x)‖₁ (pixels or VGG
  # relu4_2 features) next to the adversarial term.
  config.baseline.lambda_content = 10.0
  # feature_gan: torchvision's vgg16-397923af.pth (None: $CYCLEGAN_JAX_VGG_WEIGHTS).
  config.baseline.vgg_weights = ml_collections.config_dict.placeholder(str)
  # --- validation split (honest measurement) ----------------------------------------
  # Split evaluation scores: 'test' (testA/testB) or 'val' (valA/valB, held out of both
  # training and test: choices are made on it, the test split is scored once at the end).
  config.eval.split = 'test'
  # --- CoGAN (method='cogan'; docs/cogan.md) ---------------------------------------
  config.cogan = ml_collections.ConfigDict()
  config.cogan.nz = 100  # Size of the noise z both generators read.
  # z's prior: 'uniform' in [-1, 1] (the public Caffe CelebA model's) | 'normal'.
  config.cogan.noise = 'uniform'
  config.cogan.ngf = 32  # Generator filters at full size (×2 per halving, to 4×4).
  config.cogan.ndf = 32  # Critic filters of its first conv (×2 per layer).
  config.cogan.max_filters = 1024  # Cap on any layer's filters (reached above 128 px).
  # The generators' own last layers (the rest tied; 1: the image conv only).
  config.cogan.unshared_g = 1
  # The critics' own first layers (the rest tied; 1: the first conv only).
  config.cogan.unshared_d = 1
  config.cogan.weight_decay = 1e-4  # L2 on the weights (not biases), as the solvers.
  # Translation: Adam steps on z to reconstruct the input, their rate, and draws of
  # the prior started from per image (the best kept).
  config.cogan.invert_steps = 500
  config.cogan.invert_lr = 0.05
  config.cogan.invert_restarts = 4

  config.lock()
  return config


def for_dataset(dataset: str, *, lambda_identity: float) -> ml_collections.ConfigDict:
  """The default config on another TFDS cycle_gan dataset (the per-dataset files)."""
  config = get_config()
  config.dataset = dataset
  config.loss.lambda_identity = lambda_identity
  return config
