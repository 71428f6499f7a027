"""Entry point for `python -m fashion_clip.demo --out data/demo [--hard]`."""

from fashion_clip.demo.cli import main

raise SystemExit(main())
