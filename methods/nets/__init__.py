"""Pure PyTorch networks; modules here import only torch and numpy."""
