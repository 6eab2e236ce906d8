"""`python -m cyclegan_jax.deploy.webapp`: the browser demo's command."""

from cyclegan_jax.deploy.webapp import command

command.cli()
