"""The Wan 2.1/2.2 diffusion transformer, its config and attention."""
