"""Flow-matching schedulers, guidance and the sampling loop. Knows nothing of ComfyUI."""
