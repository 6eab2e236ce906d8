"""ml_collections config files; pass one to `--config=configs/NAME.py`."""
