"""Hydra config groups, one `_target_` per pluggable object; shipped in the package as `fashion_clip.conf`."""
