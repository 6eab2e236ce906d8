"""cyclegan-jax: CycleGAN (Zhu et al., ICCV 2017) in JAX/Flax for accelerators."""
