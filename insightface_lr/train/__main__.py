"""``python -m insightface_lr.train CONFIG [flags]``: the entry point for ``torchrun``."""

import sys

from ..cli import main

sys.exit(main(["train", *sys.argv[1:]]))
