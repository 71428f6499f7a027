"""Small helpers every part uses: files (atomic output, plain names), device choice, metadata text,
run-directory paths."""
