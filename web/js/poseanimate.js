// ComfyUI-PoseAnimate canvas extension: colours the pack's nodes so they are easy to find on the canvas, and
// plays a pose node's skeletons inside the node after it ran (web/js/pose_preview.js).
// The pack's files are served under /extensions/<pack folder>/js/, so the host's scripts are three levels up.
import { app } from "../../../scripts/app.js";
import { PREVIEW_KEY, showPosePreview } from "./pose_preview.js";

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
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      const result = onExecuted?.apply(this, arguments);
      const payload = output?.[PREVIEW_KEY]?.[0];
      if (payload) showPosePreview(this, payload);
      return result;
    };
  },
});
