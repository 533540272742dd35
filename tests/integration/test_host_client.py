"""The headless client (tools/queue_workflow.py) drives a shipped workflow end to end on a real ComfyUI:
an upload of a local video through --set, another --set, progress over /ws, and the download of the output."""
import importlib.util
import io
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


inputs = _load("pose_inputs", HERE / "pose_inputs.py")
client = _load("queue_workflow", REPO / "tools" / "queue_workflow.py")


def test_client_uploads_sets_follows_and_downloads(comfy, host_paths, tmp_path):
    inputs.write_pose_models(comfy.models_dir)
    local_video = inputs.write_driving_video(host_paths.python, tmp_path / "mine", name="my_dance.mp4")
    workflow = json.loads((REPO / "workflows" / "pose_extraction.api.json").read_text())
    log = io.StringIO()
    paths = client.run(workflow, comfy.url, sets=[f"1.file={local_video}", "4.batch_size=3",
                                                  "7.filename_prefix=poseanimate/client"],
                       out_dir=tmp_path / "out", timeout=300, report=client.Reporter(quiet=False, stream=log))
    assert "PoseAnimateExtractPoses" in log.getvalue() or "4" in log.getvalue()  # progress was followed
    assert (comfy.input_dir / "my_dance.mp4").is_file()  # uploaded under its own name
    videos = [p for p in paths if p.suffix == ".mp4"]
    assert videos and all(p.is_file() for p in videos)
    assert videos[0].parent.name == "poseanimate" and videos[0].name.startswith("client")
    probe = inputs.probe_video(host_paths.python, videos[0])
    assert probe["frames"] == inputs.VIDEO_FRAMES and (probe["width"], probe["height"]) == (
        inputs.VIDEO_WIDTH, inputs.VIDEO_HEIGHT)
