"""Evaluation entry point: `python -m fashion_clip.evaluate model=vitb32 data=fashiongen [ckpt_path=...]`."""

from __future__ import annotations

from fashion_clip.config import hydra_entry

main = hydra_entry("evaluate", "fashion_clip.evaluation.run.evaluate")

if __name__ == "__main__":
    main()
