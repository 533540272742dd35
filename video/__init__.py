"""Decoded video frames after sampling: colour space, drift figures and colour correction.

Core code (plain torch): nothing here imports ComfyUI. Frames are ComfyUI
IMAGE tensors ``[N, H, W, C]`` in 0..1.
"""
