"""WiSE-FT: `python -m fashion_clip.wise ckpt_path=... alphas=[0,0.25,0.5,0.75,1]` (Wortsman et al., 2022)."""

from __future__ import annotations

from fashion_clip.config import hydra_entry

main = hydra_entry("wise", "fashion_clip.evaluation.wise.wise")

if __name__ == "__main__":
    main()
