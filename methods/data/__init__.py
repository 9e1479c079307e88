"""Data files shipped with the methods package; README.md states where each comes from."""
