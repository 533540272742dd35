// ComfyUI-PoseAnimate canvas extension: marks the pack's nodes so they are easy to find on the canvas.
// (The pose preview with a frame scrubber lands with the pose nodes.)
import { app } from "../../scripts/app.js";

app.registerExtension({
  name: "PoseAnimate.core",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData?.category?.startsWith("PoseAnimate")) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      this.color = "#2a3f5a";
      this.bgcolor = "#1e2c3f";
      return result;
    };
  },
});
