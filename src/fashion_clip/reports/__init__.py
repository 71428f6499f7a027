"""Reporting: the results file, the tables and charts people read, cross-run comparison and its sweep
callback, the before/after recall table and the hyperparameters TensorBoard compares."""
