"""Weights and model cards shipped with the package (see `methods.shipped`)."""
