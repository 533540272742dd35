"""SteadyDancer: first-frame-preserving pose animation on the Wan 2.1 I2V DiT.

The public face (what the nodes use); the parts live in ``modules.py`` (the
condition modules), ``layers.py`` (how they fill the DiT's extension points),
``weights.py`` (the released transformer) and ``conditioning.py`` (the
sampler's conditioning and the three-branch pose guidance).
"""
from .conditioning import (PoseGuidance, SteadyDancerConditioning, build_steadydancer_conditioning,
                           first_frame_mask, pose_guidance, reference_latents)
from .layers import SteadyDancerLayers
from .weights import SteadyDancerModel, check_steadydancer_file, load_steadydancer

__all__ = ["PoseGuidance", "SteadyDancerConditioning", "SteadyDancerLayers", "SteadyDancerModel",
           "build_steadydancer_conditioning", "check_steadydancer_file", "first_frame_mask", "load_steadydancer",
           "pose_guidance", "reference_latents"]
