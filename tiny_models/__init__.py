"""Tiny random-weight model writers, for tests, benchmarks and trying the workflows without the real weights.

Not part of the core the nodes run: the networks are in ``models/``; this package writes files
for them (and for the methods' extra weights) at tiny widths under the real keys and file names.
``wan_dit.py``: a Wan DiT state dict at the official keys, Comfy-Org single files, scaled fp8;
``model_files.py``: every model file the workflows load, under the README's file names;
``distill_lora.py``: LightX2V-style step-distill LoRAs (down/up/alpha, ``.diff_b``, ``.diff``) for any DiT.
``pose_models.py``: ONNX stand-ins for the pose models (needs the ``onnx`` package); ``pose/`` holds the two
``animate.py``'s tiny demo extracts poses with, prebuilt by it so the demo needs no ``onnx``.
"""
