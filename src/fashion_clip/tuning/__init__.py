"""Hyperparameter search: an Optuna study in a database, whose trials are ordinary training runs."""
