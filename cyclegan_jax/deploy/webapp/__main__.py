"""`python -m cyclegan_jax.deploy.webapp`: the browser demo's command."""

from cyclegan_jax.deploy.webapp import command

__doc__ = command.__doc__  # What --help prints: the main module's docstring.
command.cli()
