"""open_clip_train with extra model configs: `python openclip_train_launcher.py CONFIG_DIR ARGS...`.

Runs in open_clip_train's own virtualenv (.venv-openclip), so it imports nothing from fashion_clip.
open_clip_train finds models by name only among open_clip's configs; FashionCLIP-Tiny's JSON lives in
fashion_clip, so its directory is registered first, exactly as fashion_clip's model factory does.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import open_clip
from open_clip_train.main import main


def launch(argv: Sequence[str]) -> int:
    """Register the configs in argv[0], then run open_clip_train's main with the remaining arguments."""
    config_dir, *args = argv
    open_clip.add_model_config(config_dir)
    return main(args) or 0


if __name__ == "__main__":
    sys.exit(launch(sys.argv[1:]))
