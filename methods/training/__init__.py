"""Training of the LaMa-family generators with LaMa's recipe (masks, losses, optimisers, trainer)."""
