"""Test-only ComfyUI nodes: the host's own CONDITIONING and CLIP_VISION_OUTPUT objects without the big encoders.

The host's umT5-XXL (5.7 B parameters) and CLIP ViT-H (0.6 B) are built from
fixed configs, so no tiny random file can stand in for them. These nodes make
the objects those encoders output (the same Python types and layouts, seeded
random values) so the pack's workflows run end to end in a real ComfyUI on a
CPU. The integration suite swaps them for CLIPTextEncode / CLIPVisionEncode in
the shipped API workflows. Never installed for users.
"""
import torch


class PoseAnimateTestTextEncode:
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31}),
                             "tokens": ("INT", {"default": 6, "min": 1, "max": 512}),
                             "width": ("INT", {"default": 4096, "min": 1, "max": 8192})}}

    def encode(self, seed, tokens, width):
        g = torch.Generator().manual_seed(seed)
        emb = torch.zeros(1, 512, width)  # the host's umT5 zero-pads to 512 tokens
        emb[:, :tokens] = torch.randn(1, tokens, width, generator=g)
        return ([[emb, {"pooled_output": None}]],)


class PoseAnimateTestClipVisionEncode:
    RETURN_TYPES = ("CLIP_VISION_OUTPUT",)
    FUNCTION = "encode"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31}),
                             "width": ("INT", {"default": 1280, "min": 1, "max": 4096})}}

    def encode(self, seed, width):
        import comfy.clip_vision
        g = torch.Generator().manual_seed(seed)
        out = comfy.clip_vision.Output()
        out["penultimate_hidden_states"] = torch.randn(1, 257, width, generator=g)
        out["last_hidden_state"] = torch.randn(1, 257, width, generator=g)
        out["image_embeds"] = torch.randn(1, 1024, generator=g)
        return (out,)


class PoseAnimateTestLoadedModels:
    """Reports the host's loaded-model list (comfy.model_management.current_loaded_models) as UI text."""

    RETURN_TYPES = ()
    FUNCTION = "report"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"after": ("LATENT",)}}

    def report(self, after):
        import comfy.model_management as mm
        names = [type(m.model.model).__module__ + "." + type(m.model.model).__name__ for m in mm.current_loaded_models
                 if m.model is not None]
        return {"ui": {"text": names}}


class PoseAnimateTestMemory:
    """Reports the server process's resident memory (now and at its peak, MB) and the images' shape as UI text:
    a cheap output node for memory checks."""

    RETURN_TYPES = ()
    FUNCTION = "report"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}

    def report(self, images):
        import gc
        import resource
        gc.collect()
        rss = 0
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) // 1024
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        return {"ui": {"text": [f"{rss}", f"{peak}", str(list(images.shape))]}}


class PoseAnimateTestPoses:
    """A standing figure as POSE_KEYPOINT (OpenPose layout, pixels), swaying right, for nodes that need a real
    body where the tiny keypoint models put every point on one spot."""

    RETURN_TYPES = ("POSE_KEYPOINT",)
    FUNCTION = "poses"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": ("INT", {"default": 12, "min": 1, "max": 1000}),
                             "width": ("INT", {"default": 48, "min": 8, "max": 4096}),
                             "height": ("INT", {"default": 32, "min": 8, "max": 4096})}}

    def poses(self, frames, width, height):
        body = [(0.5, 0.15), (0.5, 0.3), (0.4, 0.3), (0.35, 0.45), (0.33, 0.6), (0.6, 0.3), (0.65, 0.45),
                (0.67, 0.6), (0.45, 0.6), (0.44, 0.75), (0.44, 0.9), (0.55, 0.6), (0.56, 0.75), (0.56, 0.9),
                (0.48, 0.13), (0.52, 0.13), (0.46, 0.14), (0.54, 0.14)]
        out = []
        for t in range(frames):
            shift = 0.1 * t / max(frames - 1, 1)
            points = []
            for x, y in body:
                points += [(x - 0.05 + shift) * width, y * height, 0.9]
            out.append({"people": [{"pose_keypoints_2d": points}], "canvas_width": width, "canvas_height": height})
        return (out,)


NODE_CLASS_MAPPINGS = {"PoseAnimateTestLoadedModels": PoseAnimateTestLoadedModels,
                       "PoseAnimateTestMemory": PoseAnimateTestMemory,
                       "PoseAnimateTestPoses": PoseAnimateTestPoses,
                       "PoseAnimateTestTextEncode": PoseAnimateTestTextEncode,
                       "PoseAnimateTestClipVisionEncode": PoseAnimateTestClipVisionEncode}
