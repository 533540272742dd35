"""Wan2.2-Animate: pose latents and face blocks on the Wan 2.1-layout I2V DiT, long videos as chained clips.

The public face (what the nodes and other callers use): build an :class:`AnimateRequest` and call
:func:`animate`. The parts live in ``request.py`` (the request and the mode logic: reference fitting,
face policy, replacement checks, background masking), ``run.py`` (the whole video, clip after clip),
``clips.py`` (each clip's inputs and image condition), ``conditioning.py`` (one clip's conditioning),
``modules.py`` / ``motion.py`` / ``face.py`` (its modules and their loading), ``lora.py`` (the
relighting LoRA) and ``mask.py`` (a person mask from poses).
"""
from .clips import NO_FACE_POLICIES
from .conditioning import (DEFAULT_GUIDANCE, DEFAULT_SHIFT, DEFAULT_SOLVER, DEFAULT_STEPS, AnimateConditioning,
                           build_animate_conditioning)
from .lora import load_relight_lora
from .mask import pose_mask
from .modules import AnimateConfig, AnimateModules, load_wan_animate
from .request import AnimateRequest
from .run import animate, animate_video, clip_progress_text

__all__ = ["DEFAULT_GUIDANCE", "DEFAULT_SHIFT", "DEFAULT_SOLVER", "DEFAULT_STEPS", "NO_FACE_POLICIES",
           "AnimateConditioning", "AnimateConfig", "AnimateModules", "AnimateRequest", "animate", "animate_video",
           "build_animate_conditioning", "clip_progress_text", "load_relight_lora", "load_wan_animate", "pose_mask"]
