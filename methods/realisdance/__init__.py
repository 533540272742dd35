"""RealisDance-DiT: pose latents added to the Wan 2.1 I2V DiT's tokens, the reference appended as tokens.

The public face (what the nodes use); the parts live in ``conditioning.py`` (reference grid and
tokens, the sampler's conditioning, the reference scheduler), ``layers.py`` (the three extra layers
and the RoPE switches) and ``weights.py`` (the released transformer).
"""
from .conditioning import (RealisDanceConditioning, build_realisdance_conditioning, grey_video, realisdance_scheduler,
                           reference_grid, resize_reference_image)
from .layers import RealisDanceLayers, RopeShifts
from .weights import RealisDanceModel, load_realisdance

__all__ = ["RealisDanceConditioning", "RealisDanceLayers", "RealisDanceModel", "RopeShifts",
           "build_realisdance_conditioning", "grey_video", "load_realisdance", "realisdance_scheduler",
           "reference_grid", "resize_reference_image"]
