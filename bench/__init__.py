"""Load benchmark of Hutch (and optionally the original C server): ``python -m bench``."""
