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


NODE_CLASS_MAPPINGS = {"PoseAnimateTestLoadedModels": PoseAnimateTestLoadedModels,
                       "PoseAnimateTestTextEncode": PoseAnimateTestTextEncode,
                       "PoseAnimateTestClipVisionEncode": PoseAnimateTestClipVisionEncode}
