"""Wan2.2-Animate-2: the Wan 2.1 I2V DiT driven by the raw driving video through a pose branch.

``stream.py`` (the forward: the pose branch beside the video stream, per-frame K/V injection, through the
DiT's ``block_forward`` extension point), ``pose_cache.py`` (the pose branch's block inputs across steps).
"""
from .pose_cache import STORAGES, PoseBranchCache
from .stream import POSE_TIMESTEP, PoseInputs, PoseStream, framewise_attention, pose_positions

__all__ = ["POSE_TIMESTEP", "STORAGES", "PoseBranchCache", "PoseInputs", "PoseStream", "framewise_attention",
           "pose_positions"]
