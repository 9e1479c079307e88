"""Data shipped with the methods package: ICT's palette, the compact CelebA-HQ 64 weights and their
model cards (README.md and the *.md cards state where each file comes from)."""
