"""Small helpers every part uses: atomic file output, device choice, run-directory paths."""
