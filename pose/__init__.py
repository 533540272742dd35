"""Pose core: extraction (ONNX detector + keypoint model), people policies,
smoothing, retargeting, rendering and face crops.

Plain numpy/opencv/onnxruntime; imports nothing from ComfyUI. Keypoints travel
as :class:`~.keypoints.PoseFrame` objects (people x 136 points x (x, y,
confidence), in pixels of the frame they came from) and convert to and from
ComfyUI's POSE_KEYPOINT lists at the node boundary.
"""
