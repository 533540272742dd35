"""Step caching: block-runner policies that reuse the block stack's residual on steps where it barely changes.

A policy is a :data:`~..models.wan.dit.BlockRunner`: on a computed step it runs the whole block stack and
keeps the residual ``out - in``; on a cached step it returns ``tokens + residual`` without running a block.
Each policy keeps one state per *key*: the sampler calls :meth:`StepCache.begin` with
``(guidance branch, window)`` and the step before every DiT forward, and :meth:`StepCache.reset` at the start
of every :func:`~.video.sample_video` call (each Wan2.2-Animate clip), so no residual crosses a branch, a
window or a clip. Steps outside ``[start, end)`` are always computed.

* :class:`TeaCache` (ali-vilab/TeaCache, ``TeaCache4Wan2.1``): the relative L1 change of the timestep
  modulation (``e0``, the time projection, with ``use_ret_steps``; ``e``, the time embedding, without),
  rescaled by the published polynomial and accumulated; computed when the sum reaches the threshold.
* :class:`MagCache` (Zehong-Ma/MagCache, ``MagCache4Wan2.1``): the published per-step residual magnitude
  ratios, accumulated as ``sum |1 - prod ratio|``; at most ``k`` cached steps in a row.
* :class:`EasyCache` (ComfyUI's ``nodes_easycache.py``, after the paper): runtime-adaptive, no calibration;
  the output/input change rate of the last computed step predicts the output change, accumulated.

A threshold of 0 never caches (the output equals uncached sampling exactly). What is exact on a cached
step: ``added_tokens`` and ``extra_tokens`` are in the stack's input and so in the output (input + cached
residual); the blocks' own work *and* the ``block_adapters`` (Wan2.2-Animate's face blocks) are replaced by
the cached residual, which holds their effect from the last computed step of that branch and window. The
head always runs with the current timestep.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Hashable

import numpy as np
import torch

from ..errors import InputError
from ..models.wan.dit import BlockStack

CACHE_NAMES = ("none", "teacache", "magcache", "easycache")

# TeaCache4Wan2.1/teacache_generate.py: rescale polynomials (numpy.poly1d order, highest power first).
# "ret" (use_ret_steps=True) measures e0 (the time projection), the others e (the time embedding).
TEACACHE_COEFFICIENTS: dict[str, tuple[float, ...]] = {
    "wan2.1_t2v_1.3b": (2.39676752e+03, -1.31110545e+03, 2.01331979e+02, -8.29855975e+00, 1.37887774e-01),
    "wan2.1_t2v_14b": (-5784.54975374, 5449.50911966, -1811.16591783, 256.27178429, -13.02252404),
    "wan2.1_i2v_480p": (-3.02331670e+02, 2.23948934e+02, -5.25463970e+01, 5.87348440e+00, -2.01973289e-01),
    "wan2.1_i2v_720p": (-114.36346466, 65.26524496, -18.82220707, 4.91518089, -0.23412683),
    "wan2.1_t2v_1.3b_ret": (-5.21862437e+04, 9.23041404e+03, -5.28275948e+02, 1.36987616e+01, -4.99875664e-02),
    "wan2.1_t2v_14b_ret": (-3.03318725e+05, 4.90537029e+04, -2.65530556e+03, 5.87365115e+01, -3.15583525e-01),
    "wan2.1_i2v_480p_ret": (2.57151496e+05, -3.54229917e+04, 1.40286849e+03, -1.35890334e+01, 1.32517977e-01),
    "wan2.1_i2v_720p_ret": (8.10705460e+03, 2.13393892e+03, -3.72934672e+02, 1.66203073e+01, -4.17769401e-02),
}

# MagCache4Wan2.1/magcache_generate.py: magnitude ratios per call, positive and negative branch interleaved
# (calibrated at 50 steps for T2V, 40 for I2V; nearest-interpolated per branch to other step counts).
MAGCACHE_RATIOS: dict[str, tuple[float, ...]] = {
    "wan2.1_t2v_14b": (
        1.0, 1.0, 1.02504, 1.03017, 1.00025, 1.00251, 0.9985, 0.99962, 0.99779, 0.99771, 0.9966, 0.99658, 0.99482,
        0.99476, 0.99467, 0.99451, 0.99664, 0.99656, 0.99434, 0.99431, 0.99533, 0.99545, 0.99468, 0.99465, 0.99438,
        0.99434, 0.99516, 0.99517, 0.99384, 0.9938, 0.99404, 0.99401, 0.99517, 0.99516, 0.99409, 0.99408, 0.99428,
        0.99426, 0.99347, 0.99343, 0.99418, 0.99416, 0.99271, 0.99269, 0.99313, 0.99311, 0.99215, 0.99215, 0.99218,
        0.99215, 0.99216, 0.99217, 0.99163, 0.99161, 0.99138, 0.99135, 0.98982, 0.9898, 0.98996, 0.98995, 0.9887,
        0.98866, 0.98772, 0.9877, 0.98767, 0.98765, 0.98573, 0.9857, 0.98501, 0.98498, 0.9838, 0.98376, 0.98177,
        0.98173, 0.98037, 0.98035, 0.97678, 0.97677, 0.97546, 0.97543, 0.97184, 0.97183, 0.96711, 0.96708, 0.96349,
        0.96345, 0.95629, 0.95625, 0.94926, 0.94929, 0.93964, 0.93961, 0.92511, 0.92504, 0.90693, 0.90678, 0.8796,
        0.87945, 0.86111, 0.86189,
    ),
    "wan2.1_t2v_1.3b": (
        1.0, 1.0, 1.0124, 1.02213, 1.00166, 1.0041, 0.99791, 1.00061, 0.99682, 0.99762, 0.99634, 0.99685, 0.99567,
        0.99586, 0.99416, 0.99422, 0.99578, 0.99575, 0.9957, 0.99563, 0.99511, 0.99506, 0.99535, 0.99531, 0.99552,
        0.99549, 0.99541, 0.99539, 0.9954, 0.99536, 0.99489, 0.99485, 0.99518, 0.99514, 0.99484, 0.99478, 0.99481,
        0.99479, 0.99415, 0.99413, 0.99419, 0.99416, 0.99396, 0.99393, 0.99388, 0.99386, 0.99349, 0.99349, 0.99309,
        0.99304, 0.9927, 0.9927, 0.99228, 0.99226, 0.99171, 0.9917, 0.99137, 0.99135, 0.99068, 0.99063, 0.99005,
        0.99003, 0.98944, 0.98942, 0.98849, 0.98849, 0.98758, 0.98757, 0.98644, 0.98643, 0.98504, 0.98503, 0.9836,
        0.98359, 0.98202, 0.98201, 0.97977, 0.97978, 0.97717, 0.97718, 0.9741, 0.97411, 0.97003, 0.97002, 0.96538,
        0.96541, 0.9593, 0.95933, 0.95086, 0.95089, 0.94013, 0.94019, 0.92402, 0.92414, 0.90241, 0.9026, 0.86821,
        0.86868, 0.81838, 0.81939,
    ),
    "wan2.1_i2v_480p": (
        1.0, 1.0, 0.98783, 0.98993, 0.97559, 0.97593, 0.98311, 0.98319, 0.98202, 0.98225, 0.9888, 0.98878, 0.98762,
        0.98759, 0.98957, 0.98971, 0.99052, 0.99043, 0.99383, 0.99384, 0.98857, 0.9886, 0.99065, 0.99068, 0.98845,
        0.98847, 0.99057, 0.99057, 0.98957, 0.98961, 0.98601, 0.9861, 0.98823, 0.98823, 0.98756, 0.98759, 0.98808,
        0.98814, 0.98721, 0.98724, 0.98571, 0.98572, 0.98543, 0.98544, 0.98157, 0.98165, 0.98411, 0.98413, 0.97952,
        0.97953, 0.98149, 0.9815, 0.9774, 0.97742, 0.97825, 0.97826, 0.97355, 0.97361, 0.97085, 0.97087, 0.97056,
        0.97055, 0.96588, 0.96587, 0.96113, 0.96124, 0.9567, 0.95681, 0.94961, 0.94969, 0.93973, 0.93988, 0.93217,
        0.93224, 0.91878, 0.91896, 0.90955, 0.90954, 0.92617, 0.92616,
    ),
    "wan2.1_i2v_720p": (
        1.0, 1.0, 0.99428, 0.99498, 0.98588, 0.98621, 0.98273, 0.98281, 0.99018, 0.99023, 0.98911, 0.98917, 0.98646,
        0.98652, 0.99454, 0.99456, 0.9891, 0.98909, 0.99124, 0.99127, 0.99102, 0.99103, 0.99215, 0.99212, 0.99515,
        0.99515, 0.99576, 0.99572, 0.99068, 0.99072, 0.99097, 0.99097, 0.99166, 0.99169, 0.99041, 0.99042, 0.99201,
        0.99198, 0.99101, 0.99101, 0.98599, 0.98603, 0.98845, 0.98844, 0.98848, 0.98851, 0.98862, 0.98857, 0.98718,
        0.98719, 0.98497, 0.98497, 0.98264, 0.98263, 0.98389, 0.98393, 0.97938, 0.9794, 0.97535, 0.97536, 0.97498,
        0.97499, 0.973, 0.97301, 0.96827, 0.96828, 0.96261, 0.96263, 0.95335, 0.9534, 0.94649, 0.94655, 0.93397,
        0.93414, 0.91636, 0.9165, 0.89088, 0.89109, 0.8679, 0.86768,
    ),
}

PRESETS = ("auto", "wan2.1_t2v_1.3b", "wan2.1_t2v_14b", "wan2.1_i2v_480p", "wan2.1_i2v_720p")
_720P_TOKENS_PER_FRAME = 2500  # 480p: 30 x 52 = 1560 patches per latent frame; 720p: 45 x 80 = 3600


def model_preset(stack: BlockStack) -> str:
    """The published table nearest to this DiT: T2V 1.3B / 14B by width, Wan2.1 I2V (a CLIP branch) 480p /
    720p by the tokens per frame. Models without published tables (Wan2.2, Animate) get the nearest kind."""
    if stack.image is None:
        return "wan2.1_t2v_1.3b" if stack.text.shape[-1] <= 2048 else "wan2.1_t2v_14b"
    _, h, w = stack.grid
    return "wan2.1_i2v_720p" if h * w >= _720P_TOKENS_PER_FRAME else "wan2.1_i2v_480p"


def nearest_interp(values: np.ndarray, length: int) -> np.ndarray:
    """MagCache's ``nearest_interp``: ``values`` resampled to ``length`` points by nearest index."""
    if length == 1:
        return np.array([values[-1]])
    scale = (len(values) - 1) / (length - 1)
    return values[np.round(np.arange(length) * scale).astype(int)]


def check_threshold(name: str, value: float, upper: float = 1.0, what: str = "cache_threshold") -> float:
    """Refuse NaN, infinite and out-of-range thresholds, naming the input."""
    value = float(value)
    if math.isnan(value) or not 0.0 <= value <= upper:
        raise InputError(what, f"is {value} for {name}", f"a number from 0 (never cache) to {upper}")
    return value


@dataclass
class _State:
    residual: torch.Tensor | None = None
    calls: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class StepCache:
    """Base policy: a block runner with per-key state, step bounds and a count of skipped block passes.

    ``start``: the first step that may be cached (None: the policy's default); ``end``: steps from ``end``
    on are computed (None: every step to the last). Subclasses implement :meth:`decide`.
    """

    name = "none"
    default_start = 0

    def __init__(self, threshold: float, start: int | None = None, end: int | None = None):
        self.threshold = check_threshold(self.name, threshold, self.max_threshold)
        if start is not None and start < 0:
            raise InputError("cache_start", f"is {start}", "a step index >= 0")
        if end is not None and end < 0:
            raise InputError("cache_end", f"is {end}", "a step index >= 0")
        self.start = self.default_start if start is None else int(start)
        self.end = end
        self.computed = 0  # forwards that ran the block stack
        self.skipped = 0   # forwards that reused a residual
        self.skipped_blocks = 0  # block passes skipped
        self.total_blocks = 0
        self.reset()

    max_threshold = 1.0

    def reset(self) -> None:
        """Forget every residual (a new video, window plan or Animate clip); the counts are kept."""
        self._states: dict[Hashable, _State] = {}
        self._key: Hashable = None
        self._step: int | None = None
        self._steps: int | None = None

    def begin(self, key: Hashable, step: int, steps: int) -> None:
        """The next forward is ``step`` (of ``steps``) for ``key`` (``(positive, window)``)."""
        self._key, self._step, self._steps = key, int(step), int(steps)

    def report(self) -> str:
        total = self.computed + self.skipped
        saved = self.skipped_blocks / self.total_blocks if self.total_blocks else 0.0
        return (f"{self.name}: {self.skipped} of {total} forwards cached, {self.skipped_blocks} of "
                f"{self.total_blocks} block passes skipped ({100 * saved:.1f}%)")

    def in_bounds(self, step: int, steps: int | None) -> bool:
        end = self.end if self.end is not None else (steps if steps is not None else step + 1)
        return self.start <= step < end

    def __call__(self, stack: BlockStack, tokens: torch.Tensor) -> torch.Tensor:
        state = self._states.setdefault(self._key, _State())
        step = self._step if self._step is not None else state.calls
        steps = self._steps
        self._step = None
        state.calls += 1
        usable = state.residual is not None and state.residual.shape == tokens.shape
        skip = self.decide(state, stack, tokens, step, steps, self.in_bounds(step, steps)) and usable
        self.total_blocks += len(stack)
        if skip:
            self.skipped += 1
            self.skipped_blocks += len(stack)
            return tokens + state.residual
        out = stack.run(tokens)
        state.residual = out - tokens
        self.computed += 1
        self.after_compute(state, tokens, out)
        return out

    def decide(self, state: _State, stack: BlockStack, tokens: torch.Tensor, step: int, steps: int | None,
               in_bounds: bool) -> bool:
        return False

    def cacheable_steps(self, steps: int) -> list[int]:
        """The steps of a ``steps``-step run this policy may cache (step 0 never: it has no residual yet)."""
        return [step for step in range(1, steps) if self.in_bounds(step, steps)]

    def after_compute(self, state: _State, tokens: torch.Tensor, out: torch.Tensor) -> None:
        pass


class TeaCache(StepCache):
    """TeaCache4Wan2.1's rule, per branch and window: outside the bounds compute and reset the sum; inside,
    add ``poly(mean|m - m_prev| / mean|m_prev|)`` and cache while the sum is below the threshold (then
    compute and reset). ``m`` is the modulation of every call, cached or not. ``use_ret_steps`` (the
    reference's better mode): ``m`` = e0 and caching from step 5; without it ``m`` = e, from step 1 to the
    second-to-last step (the reference's bounds, used when ``start`` / ``end`` are None)."""

    name = "teacache"

    def __init__(self, threshold: float = 0.2, start: int | None = None, end: int | None = None,
                 preset: str = "auto", use_ret_steps: bool = True):
        if preset not in PRESETS:
            raise InputError("cache_preset", f"is {preset!r}", f"one of {', '.join(PRESETS)}")
        self.use_ret_steps = use_ret_steps
        self.default_start = 5 if use_ret_steps else 1
        self.preset = preset
        super().__init__(threshold, start, end)
        self.default_end_offset = 0 if use_ret_steps else 1

    def in_bounds(self, step: int, steps: int | None) -> bool:
        if self.end is None and steps is not None:
            return self.start <= step < steps - self.default_end_offset
        return super().in_bounds(step, steps)

    def coefficients(self, stack: BlockStack) -> tuple[float, ...]:
        name = model_preset(stack) if self.preset == "auto" else self.preset
        return TEACACHE_COEFFICIENTS[name + ("_ret" if self.use_ret_steps else "")]

    def modulated_input(self, stack: BlockStack) -> torch.Tensor:
        return stack.time.table if self.use_ret_steps else stack.time.head_table

    def decide(self, state, stack, tokens, step, steps, in_bounds) -> bool:
        modulated = self.modulated_input(stack)
        previous = state.extra.get("previous")
        state.extra["previous"] = modulated.clone()
        distance = None
        if previous is not None and previous.shape == modulated.shape:
            distance = ((modulated - previous).abs().mean() / previous.abs().mean()).cpu().item()
        return self.decide_distance(state, distance, in_bounds, self.coefficients(stack))

    def decide_distance(self, state: _State, distance: float | None, in_bounds: bool,
                        coefficients: tuple[float, ...]) -> bool:
        """The reference's update of the accumulated distance; True: cache this call."""
        if not in_bounds or distance is None or self.threshold == 0.0:
            state.extra["accumulated"] = 0.0
            return False
        accumulated = state.extra.get("accumulated", 0.0) + float(np.poly1d(coefficients)(distance))
        if accumulated < self.threshold:
            state.extra["accumulated"] = accumulated
            return True
        state.extra["accumulated"] = 0.0
        return False


class MagCache(StepCache):
    """MagCache4Wan2.1's rule, per branch and window: from ``start`` (default: the first
    ``retention_ratio`` of the steps computed), multiply the branch's published ratio for this step into
    the running ratio, add ``|1 - ratio|`` to the error, and cache while the error is below the threshold
    and at most ``k`` steps were cached in a row; else compute and reset. The decisions depend on the
    table, the step and the branch only (not on the run)."""

    name = "magcache"

    def __init__(self, threshold: float = 0.12, start: int | None = None, end: int | None = None,
                 preset: str = "auto", k: int = 2, retention_ratio: float = 0.2):
        if preset not in PRESETS:
            raise InputError("cache_preset", f"is {preset!r}", f"one of {', '.join(PRESETS)}")
        self.preset, self.k, self.retention_ratio = preset, int(k), float(retention_ratio)
        super().__init__(threshold, start, end)
        self._explicit_start = start is not None

    def ratios(self, preset: str, positive: bool, steps: int) -> np.ndarray:
        table = np.array(MAGCACHE_RATIOS[preset])
        branch = table[0::2] if positive else table[1::2]
        return branch if len(table) == 2 * steps else nearest_interp(branch, steps)

    def first_step(self, positive: bool, steps: int) -> int:
        """The reference's ``cnt >= int(num_steps * retention_ratio)`` over interleaved calls, per branch."""
        first_call = int(2 * steps * self.retention_ratio)
        return math.ceil((first_call - (0 if positive else 1)) / 2)

    def cacheable_steps(self, steps: int) -> list[int]:
        start = self.start if self._explicit_start else self.first_step(True, steps)
        end = self.end if self.end is not None else steps
        return [step for step in range(max(1, start), min(end, steps))]

    def decide(self, state, stack, tokens, step, steps, in_bounds) -> bool:
        positive = _positive(self._key)
        steps = steps if steps is not None else max(step + 1, 1)
        start = self.start if self._explicit_start else self.first_step(positive, steps)
        end = self.end if self.end is not None else steps
        preset = model_preset(stack) if self.preset == "auto" else self.preset
        ratio = float(self.ratios(preset, positive, steps)[min(step, steps - 1)])
        return self.decide_ratio(state, ratio, start <= step < end)

    def decide_ratio(self, state: _State, ratio: float, in_bounds: bool) -> bool:
        if not in_bounds:
            return False
        extra = state.extra
        extra["ratio"] = extra.get("ratio", 1.0) * ratio
        extra["steps"] = extra.get("steps", 0) + 1
        extra["error"] = extra.get("error", 0.0) + abs(1 - extra["ratio"])
        if extra["error"] < self.threshold and extra["steps"] <= self.k:
            return True
        extra.update(ratio=1.0, steps=0, error=0.0)
        return False


class EasyCache(StepCache):
    """Runtime-adaptive (ComfyUI's EasyCache rule, applied to the block stack of each branch and window):
    after two computed steps, ``k = mean|out - out_prev| / mean|in - in_prev|``; each later call adds
    ``k * mean|in - in_last| / mean|out_last|`` to a running sum and is cached while the sum is below the
    threshold (else computed, sum reset). Default bounds: from 15% of the steps to 95%, as ComfyUI's."""

    name = "easycache"

    def __init__(self, threshold: float = 0.2, start: int | None = None, end: int | None = None,
                 start_fraction: float = 0.15, end_fraction: float = 0.95):
        self.start_fraction, self.end_fraction = start_fraction, end_fraction
        super().__init__(threshold, start, end)
        self._explicit = (start is not None, end is not None)

    max_threshold = 10.0

    def in_bounds(self, step: int, steps: int | None) -> bool:
        steps_n = steps if steps is not None else step + 1
        start = self.start if self._explicit[0] else math.ceil(self.start_fraction * steps_n)
        end = self.end if self._explicit[1] else math.floor(self.end_fraction * steps_n)
        return start <= step < end

    def decide(self, state, stack, tokens, step, steps, in_bounds) -> bool:
        extra = state.extra
        previous = extra.get("input")
        change = None
        if previous is not None and previous.shape == tokens.shape:
            change = (tokens - previous).abs().mean().item()
        extra["change"] = change
        if not in_bounds or self.threshold == 0.0 or change is None or "rate" not in extra:
            extra["sum"] = 0.0
            return False
        extra["sum"] = extra.get("sum", 0.0) + extra["rate"] * change / max(extra["output_norm"], 1e-12)
        if extra["sum"] < self.threshold:
            return True
        extra["sum"] = 0.0
        return False

    def after_compute(self, state, tokens, out) -> None:
        extra = state.extra
        previous_out, change = extra.get("output"), extra.get("change")
        if previous_out is not None and previous_out.shape == out.shape and change:
            extra["rate"] = (out - previous_out).abs().mean().item() / change
        extra["input"], extra["output"] = tokens.clone(), out.clone()
        extra["output_norm"] = out.abs().mean().item()


def _positive(key: Hashable) -> bool:
    return bool(key[0]) if isinstance(key, tuple) and key else True


def check_cache_fits(cache: StepCache | None, steps: int, scheduler: str = "") -> None:
    """Refuse a cache that can skip no step of this run (a 4-step distilled schedule with TeaCache's default
    start at step 5, say): it would cost its bookkeeping and save nothing, which a user would not notice."""
    if cache is None or cache.threshold == 0.0 or cache.cacheable_steps(int(steps)):
        return
    run = f"{steps}-step {scheduler} run".replace("  ", " ")
    raise InputError("cache", f"{cache.name} can cache no step of this {run}: step 0 is always computed and "
                     "its bounds (cache_start / cache_end, or the policy's defaults) leave no other",
                     "a cache_start below the step count, more steps, or cache none")


def make_step_cache(name: str, threshold: float | None = None, start: int | None = None,
                    end: int | None = None, preset: str = "auto") -> StepCache | None:
    """The policy called ``name`` (None for "none"); bad names and thresholds raise InputError."""
    if name not in CACHE_NAMES:
        raise InputError("cache", f"is {name!r}", f"one of {', '.join(CACHE_NAMES)}")
    if name == "none":
        return None
    if start is not None and end is not None and end <= start:
        raise InputError("cache_end", f"is {end}, not after cache_start {start}", "a step after cache_start")
    kwargs: dict[str, Any] = {"start": start, "end": end}
    if threshold is not None:
        kwargs["threshold"] = threshold
    if name == "teacache":
        return TeaCache(preset=preset, **kwargs)
    if name == "magcache":
        return MagCache(preset=preset, **kwargs)
    return EasyCache(**kwargs)
