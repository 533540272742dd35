"""sRGB <-> CIE L*a*b* (D65) in torch, on any device, channels last.

Lab is the space where equal distances look about equally different to the
eye (ΔE76 is the Euclidean distance in it), so colour statistics are matched
and compared there rather than in RGB. Our own few lines instead of OpenCV's
``cvtColor`` so that frames stay on their device (a GPU IMAGE batch need not
visit the CPU) and stay float32. These are the exact formulas (sRGB red is
L 53.2408, a 80.0925, b 67.2032, the published value); OpenCV's float
``cvtColor`` interpolates tables and is within about 0.5 of them.
"""
from __future__ import annotations

import torch

# sRGB primaries with the D65 white (IEC 61966-2-1), linear RGB -> XYZ
_RGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
               (0.2126729, 0.7151522, 0.0721750),
               (0.0193339, 0.1191920, 0.9503041))
_XYZ_TO_RGB = tuple(map(tuple, torch.linalg.inv(torch.tensor(_RGB_TO_XYZ, dtype=torch.float64)).tolist()))
_WHITE = (0.95047, 1.0, 1.08883)  # D65, Y = 1
_DELTA = 6.0 / 29.0


def _matrix(rows, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32, device=like.device)


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` sRGB in 0..1 -> ``[..., 3]`` Lab (L 0..100, a and b about -128..127), float32."""
    rgb = rgb.float().clamp(0.0, 1.0)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _matrix(_RGB_TO_XYZ, rgb).T / _matrix(_WHITE, rgb)
    f = torch.where(xyz > _DELTA ** 3, xyz.clamp_min(1e-12) ** (1.0 / 3.0), xyz / (3 * _DELTA ** 2) + 4.0 / 29.0)
    fx, fy, fz = f.unbind(-1)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-1)


def lab_to_srgb(lab: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` Lab -> ``[..., 3]`` sRGB, clipped to 0..1 (colours outside the sRGB gamut are clipped)."""
    lab = lab.float()
    fy = (lab[..., 0] + 16.0) / 116.0
    f = torch.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], dim=-1)
    xyz = torch.where(f > _DELTA, f ** 3, 3 * _DELTA ** 2 * (f - 4.0 / 29.0)) * _matrix(_WHITE, lab)
    linear = (xyz @ _matrix(_XYZ_TO_RGB, lab).T).clamp(0.0, 1.0)
    rgb = torch.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1.0 / 2.4) - 0.055)
    return rgb.clamp(0.0, 1.0)
