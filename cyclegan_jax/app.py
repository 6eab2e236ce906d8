"""`python -m cyclegan_jax.app --workdir=DIR`: the browser demo (`deploy/webapp`), short."""

from cyclegan_jax.deploy.webapp import command

if __name__ == '__main__':
  __doc__ = command.__doc__  # What --help prints: the main module's docstring.
  command.cli()
