"""The browser demo: a local page that translates images with a checkpoint.

  python -m cyclegan_jax.deploy.webapp --workdir=DIR [--port=8000]

`command` is the command line, `demo` the loaded checkpoint (translation through
`deploy.translate`'s own path), `examples` the test images offered, `server` the HTTP
side (stdlib only) and `page.html` the page.
"""
