"""The networks and their checkpoint formats. Plain torch: imports nothing from ComfyUI."""
