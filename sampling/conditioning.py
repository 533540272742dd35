"""The conditioning contract: what every method hands the sampler.

A method (UniAnimate-DiT, RealisDance-DiT, Wan2.2-Animate) turns its inputs
into a :class:`MethodConditioning`: an object that can produce the Wan DiT's
conditioning (:class:`~.wan_denoiser.WanCond`) for either branch of
classifier-free guidance, at any step, for the whole video or for one window
of it, and that frees what it cached for a run when asked. The sampler
(``sampling/video.py``) knows nothing else about methods, so a new method
never touches the sampler or the DiT. The contract lives here, in
``sampling/``, because the sampler is its consumer: methods import it,
``sampling/`` never imports a method.

Latents here are in the *model* space of the official Wan code (VAE output
normalised by the per-channel mean and std). ComfyUI's LATENT holds the raw
VAE latent; nodes convert at the edges (``models/wan/latent_space.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..models.wan.latent_space import LATENT_CHANNELS, pixel_frames
from .wan_denoiser import WanCond
from .windows import Window


@dataclass(frozen=True)
class VideoGeometry:
    """The size of the video being generated, in latent units (``[1, 16, frames, height, width]``)."""

    frames: int
    height: int
    width: int
    channels: int = LATENT_CHANNELS

    @property
    def latent_shape(self) -> tuple[int, int, int, int, int]:
        return (1, self.channels, self.frames, self.height, self.width)

    @property
    def pixel_frames(self) -> int:
        return pixel_frames(self.frames)


@runtime_checkable
class MethodConditioning(Protocol):
    """A method's conditioning, ready for the sampler."""

    geometry: VideoGeometry

    def branch(self, positive: bool, step: int, steps: int, window: Window | None = None) -> WanCond:
        """The DiT conditioning for one guidance branch at ``step`` of ``steps``.

        ``window`` is None for a whole-video run; otherwise every time-indexed
        condition (pose tokens, pose latents, masks, face features) is cut to
        that window and the image condition is built for the window's length.
        """
        ...

    # Optional: ``guidance(positive, negative, cfg_scale, steps)`` returning a guidance object (``velocity`` and
    # ``bind`` as sampling.guidance.Guidance) for a method with more than two branches; the sampler node passes
    # it to sample_video's ``make_guidance`` (SteadyDancer's pose guidance).

    def clear_cache(self) -> None:
        """Free what :meth:`branch` cached for this run (pose tokens per window, face features).

        The sampler node calls it after every run, finished or not, so nothing
        per-run stays alive in the host's node-output cache; a later run builds
        it again. A method with nothing cached does nothing.
        """
        ...


def branch_frames(geometry: VideoGeometry, step: int, steps: int, window: Window | None) -> int:
    """The latent frames a branch covers (the window's, or the whole video's), after checking the step and
    that the window lies inside the video (a sampler bug otherwise, not a user's mistake)."""
    if steps < 1 or not 0 <= step < steps:
        raise ValueError(f"step {step} is outside 0..{steps - 1}")
    if window is None:
        return geometry.frames
    if not 0 <= window.start < window.end <= geometry.frames:
        raise ValueError(f"window {window.index} (latent frames {window.start}-{window.end - 1}) is outside "
                         f"the video's {geometry.frames} latent frames")
    return window.length
