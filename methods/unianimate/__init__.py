"""UniAnimate-DiT: pose tokens added to the Wan 2.1 I2V DiT, the reference pose added to its image condition.

The public face (what the nodes, ``animate.py`` and benchmarks use); the parts live in
``conditioning.py`` (the sampler's conditioning), ``encoders.py`` (the two pose encoders) and
``weights.py`` (the released file: LoRA + encoders).
"""
from .conditioning import UniAnimateConditioning, build_unianimate_conditioning
from .encoders import UniAnimateEncoders
from .weights import UniAnimateWeights, load_unianimate, parse_unianimate

__all__ = ["UniAnimateConditioning", "UniAnimateEncoders", "UniAnimateWeights", "build_unianimate_conditioning",
           "load_unianimate", "parse_unianimate"]
