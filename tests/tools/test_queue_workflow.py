"""tools/queue_workflow.py: --set, the API-format check, multipart, the WebSocket reader, error texts, and one
whole run against a small fake ComfyUI (HTTP + WebSocket in a thread)."""
import email.parser
import email.policy
import importlib.util
import json
import socket
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "queue_workflow.py"
_spec = importlib.util.spec_from_file_location("queue_workflow", TOOL)
qw = importlib.util.module_from_spec(_spec)
sys.modules["queue_workflow"] = qw  # dataclasses look their module up
_spec.loader.exec_module(qw)
ws = sys.modules["websocket_client"]  # the RFC 6455 client the tool imports (tests/tools/test_websocket_client.py)


def workflow():
    return {
        "7": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "model": ["4", 0]},
              "_meta": {"title": "KSampler"}},
        "9": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]},
              "_meta": {"title": "Positive v1.2"}},
        "10": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]},
               "_meta": {"title": "Prompt"}},
        "11": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]},
               "_meta": {"title": "Prompt"}},
        "12": {"class_type": "LoadImage", "inputs": {"image": "example.png"}, "_meta": {"title": "Reference"}},
    }


# ------------------------------------------------------------------------------------------- --set


def test_values_are_json_when_they_parse_else_strings():
    cases = {"7.seed=42": 42, "7.cfg=3.5": 3.5, "7.x=true": True, "7.x=[1, 2]": [1, 2], "7.x=null": None,
             '7.x="42"': "42", "9.text=a dancer": "a dancer", "9.text=": "", "9.text=a=b": "a=b"}
    for text, expected in cases.items():
        assert qw.parse_set(text).value == expected, text
    a = qw.parse_set("Positive v1.2.text=hi")  # a title with dots: the input is after the last one
    assert (a.node, a.input, a.is_json) == ("Positive v1.2", "text", False)
    with pytest.raises(qw.WorkflowError, match="NODE.INPUT=VALUE"):
        qw.parse_set("7seed=1")
    with pytest.raises(qw.WorkflowError, match="NODE.INPUT=VALUE"):
        qw.parse_set("7.seed")


def test_sets_by_id_and_unique_title_leave_the_original_alone():
    original = workflow()
    result = qw.apply_sets(original, ["7.seed=42", "Positive v1.2.text=a dancer", "Reference.image=x.png"])
    assert result["7"]["inputs"]["seed"] == 42
    assert result["9"]["inputs"]["text"] == "a dancer"
    assert result["12"]["inputs"]["image"] == "x.png"
    assert original == workflow()


def test_unknown_nodes_inputs_and_shared_titles_are_explained():
    with pytest.raises(qw.WorkflowError) as e:
        qw.apply_sets(workflow(), ["99.seed=1"])
    assert "no node has the id or title '99'" in str(e.value)
    assert '12 (LoadImage "Reference")' in str(e.value) and "7 (KSampler)" in str(e.value)
    with pytest.raises(qw.WorkflowError) as e:
        qw.apply_sets(workflow(), ["7.sed=1"])
    assert "has no input 'sed'" in str(e.value)
    assert "  seed = 1\n  steps = 20\n  model = <- output 0 of node 4" in str(e.value)
    with pytest.raises(qw.WorkflowError, match="used by nodes 10, 11"):
        qw.apply_sets(workflow(), ["Prompt.text=x"])


def test_local_media_files_are_uploaded_after_every_set_is_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ref.png").write_bytes(b"png")
    (tmp_path / "notes.txt").write_text("x")
    uploads = []

    def upload(path):
        uploads.append(path)
        return "sub/" + path.name

    result = qw.apply_sets(workflow(), ["12.image=ref.png", "9.text=notes.txt", '10.text="ref.png"'], upload)
    assert uploads == [Path("ref.png")]
    assert result["12"]["inputs"]["image"] == "sub/ref.png"
    assert result["9"]["inputs"]["text"] == "notes.txt"      # not a media file: a plain string
    assert result["10"]["inputs"]["text"] == "ref.png"       # a JSON string: literal, no upload
    uploads.clear()
    with pytest.raises(qw.WorkflowError):
        qw.apply_sets(workflow(), ["12.image=ref.png", "12.imag=1"], upload)
    assert uploads == []


# ------------------------------------------------------------------------------------ the workflow


def test_ui_format_is_refused_and_api_format_checked(tmp_path):
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}))
    with pytest.raises(qw.WorkflowError, match=r'canvas \(UI\) workflow.*"Save \(API\)"') as e:
        qw.load_workflow(ui)
    assert e.value.exit_code == 2
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"prompt": workflow(), "client_id": "x"}))
    assert qw.load_workflow(body) == workflow()
    bad = tmp_path / "bad.json"
    bad.write_text('{"1": {"class_type": "X", "inputs": {}},}')
    with pytest.raises(qw.WorkflowError, match="not valid JSON \\(line 1"):
        qw.load_workflow(bad)
    with pytest.raises(qw.WorkflowError, match="node '2' has no class_type"):
        qw.check_api_format({"1": {"class_type": "X", "inputs": {}}, "2": {"inputs": {}}})


def test_multipart_body_parses_back():
    content = b"\x89PNG\r\n--not-a-boundary\r\n\x00\xff"
    body, content_type = qw.encode_multipart({"type": "input", "overwrite": "true"},
                                             {"image": ('my "ref".png', content, "image/png")}, boundary="BND")
    assert content_type == "multipart/form-data; boundary=BND"
    assert body.startswith(b'--BND\r\nContent-Disposition: form-data; name="type"\r\n\r\ninput\r\n')
    assert body.endswith(b"--BND--\r\n")
    fields = parse_multipart(body, content_type)
    assert fields["type"] == (None, b"input") and fields["overwrite"] == (None, b"true")
    assert fields["image"] == ("my %22ref%22.png", content)


def parse_multipart(body, content_type):
    """An independent reader (the email package): field -> (file name, bytes)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return {part.get_param("name", header="content-disposition"): (part.get_filename(),
            part.get_payload(decode=True)) for part in message.iter_parts()}


# ---------------------------------------------------------------------------------- error messages


def test_node_errors_read_well():
    body = {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                      "details": "...", "extra_info": {}},
            "node_errors": {"12": {"class_type": "LoadImage", "dependent_outputs": ["3"], "errors": [
                {"type": "custom_validation_failed", "message": "Custom validation failed for node",
                 "details": "image - Invalid image file: nope.png", "extra_info": {}}]},
                            "7": {"class_type": "KSampler", "errors": [
                {"type": "value_smaller_than_min", "message": "Value 0 smaller than min of 1",
                 "details": "steps", "extra_info": {}}, {"message": "Required input is missing", "details": ""}]}}}
    assert qw.format_prompt_error(body, workflow()) == (
        "ComfyUI refused the workflow: Prompt outputs failed validation\n"
        '  node 12 (LoadImage "Reference"):\n'
        "    - Custom validation failed for node: image - Invalid image file: nope.png\n"
        "  node 7 (KSampler):\n"
        "    - Value 0 smaller than min of 1: steps\n"
        "    - Required input is missing")
    no_prompt = {"error": {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided"},
                 "node_errors": {}}
    assert qw.format_prompt_error(no_prompt) == ("ComfyUI refused the workflow: No prompt provided\n"
                                                 "  No prompt provided")


def test_execution_error_shows_the_node_and_the_traceback_end():
    data = {"prompt_id": "p", "node_id": "7", "node_type": "KSampler", "exception_type": "torch.OutOfMemoryError",
            "exception_message": "CUDA out of memory\n", "traceback": [f"  line {i}\n" for i in range(30)]}
    text = qw.format_execution_error(data, workflow())
    lines = text.splitlines()
    assert lines[0] == "ComfyUI failed in node 7 (KSampler): torch.OutOfMemoryError: CUDA out of memory"
    assert lines[1] == "traceback (last lines):"
    assert lines[2:] == [f"    line {i}" for i in range(30 - qw.TRACEBACK_LINES, 30)]
    assert qw.format_execution_error({**data, "node_id": "42", "node_type": "VAEDecode"}, workflow()) \
        .startswith("ComfyUI failed in node 42 (VAEDecode): ")


def test_messages_of_other_prompts_are_ignored():
    report = qw.Reporter(quiet=True)
    assert not qw.handle_message({"type": "executing", "data": {"node": None, "prompt_id": "other"}}, "p", {}, report)
    assert qw.handle_message({"type": "executing", "data": {"node": None, "prompt_id": "p"}}, "p", {}, report)
    assert qw.handle_message({"type": "execution_success", "data": {"prompt_id": "p"}}, "p", {}, report)
    with pytest.raises(qw.ExecutionInterrupted):
        qw.handle_message({"type": "execution_interrupted", "data": {"prompt_id": "p", "node_id": "7"}}, "p",
                          workflow(), report)


def test_the_tool_imports_neither_torch_nor_the_pack():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import queue_workflow; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'poseanimate')))")
    out = subprocess.run([sys.executable, "-c", code, str(TOOL.parent)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


# ---------------------------------------------------------------------------------- a fake ComfyUI


def text_frame(message, fragments=1):
    """A server frame (unmasked) with ``message`` as JSON, split into ``fragments`` frames."""
    data = json.dumps(message).encode()
    if fragments == 1:
        return ws.encode_frame(ws.OP_TEXT, data, mask=False)
    step = -(-len(data) // fragments)
    parts = [data[i:i + step] for i in range(0, len(data), step)]
    out = b""
    for i, part in enumerate(parts):
        first = (ws.OP_TEXT if i == 0 else ws.OP_CONT) | (0x80 if i == len(parts) - 1 else 0)
        out += bytes([first, len(part)]) + part
    return out


class FakeComfy:
    """Records what the client sends; answers /prompt, /ws (a scripted message list), /history, /view."""

    def __init__(self):
        self.frames = []             # what /ws sends once the prompt is queued
        self.reject = None           # a 400 body for /prompt
        self.uploads, self.prompts, self.posts = [], [], []
        self.client_id = None
        self.client_frames = []
        self.queued = threading.Event()
        self.ws_done = threading.Event()
        self.history = {"p1": {"outputs": {
            "9": {"images": [{"filename": "out_00001_.png", "subfolder": "", "type": "output"}]},
            "10": {"gifs": [{"filename": "clip.mp4", "subfolder": "vids", "type": "output", "format": "video/mp4"}],
                   "animated": [True]},
            "11": {"images": [{"filename": "evil.png", "subfolder": "../../x", "type": "temp"}], "text": ["hi"]}},
            "status": {"status_str": "success", "completed": True, "messages": []}}}
        self.files = {("out_00001_.png", "", "output"): b"PNG-1",
                      ("clip.mp4", "vids", "output"): b"MP4" * 1000,
                      ("evil.png", "../../x", "temp"): b"EVIL"}


def make_handler(fake):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, body=b"", content_type="application/json"):
            body = json.dumps(body).encode() if not isinstance(body, bytes) else body
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/upload/image":
                fields = parse_multipart(body, self.headers["Content-Type"])
                fake.uploads.append(fields)
                self.reply(200, {"name": fields["image"][0], "subfolder": "", "type": "input"})
            elif self.path == "/prompt":
                fake.prompts.append(json.loads(body))
                if fake.reject is not None:
                    self.reply(400, fake.reject)
                else:
                    self.reply(200, {"prompt_id": "p1", "number": 0, "node_errors": {}})
                    fake.queued.set()
            else:
                fake.posts.append((self.path, json.loads(body)))
                self.reply(200)

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            if url.path == "/ws":
                self.websocket(query)
            elif url.path.startswith("/history/"):
                pid = url.path.rsplit("/", 1)[1]
                self.reply(200, {pid: fake.history[pid]} if pid in fake.history else {})
            elif url.path == "/view":
                key = (query["filename"], query["subfolder"], query["type"])
                self.reply(200, fake.files[key], "application/octet-stream") if key in fake.files else self.reply(404)
            else:
                self.reply(404)

        def websocket(self, query):
            fake.client_id = query.get("clientId")
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", ws.ws_accept_key(self.headers["Sec-WebSocket-Key"]))
            self.end_headers()
            self.wfile.write(text_frame({"type": "status", "data": {"status": {}, "sid": fake.client_id}}))
            self.wfile.flush()
            self.close_connection = True
            try:
                if fake.queued.wait(5):
                    self.wfile.write(b"".join(fake.frames))
                    self.wfile.flush()
                parser = ws.FrameParser()
                self.connection.settimeout(5)
                while (data := self.rfile.read1(65536)):
                    for opcode, payload in parser.feed(data):
                        fake.client_frames.append((opcode, payload))
                        if opcode == ws.OP_CLOSE:
                            self.wfile.write(ws.encode_frame(ws.OP_CLOSE, payload, mask=False))
                            return
            except OSError:
                pass
            finally:
                fake.ws_done.set()

    return Handler


@pytest.fixture
def fake():
    fake = FakeComfy()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


def msg(kind, **data):
    return {"type": kind, "data": data}


def test_a_whole_run(fake, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ref.png").write_bytes(b"\x89PNG local")
    progress_text = msg("progress", value=2, max=2, prompt_id="p1", node="7", pad="x" * 200)  # a 16-bit length
    fake.frames = [
        text_frame(msg("execution_start", prompt_id="p1")),
        text_frame(msg("execution_cached", nodes=["4"], prompt_id="p1")),
        text_frame(msg("executing", node="7", display_node="7", prompt_id="p1")),
        ws.encode_frame(ws.OP_BINARY, b"\x00\x00\x00\x01preview-jpeg", mask=False),
        text_frame(msg("progress", value=1, max=2, prompt_id="p1", node="7"), fragments=3),
        ws.encode_frame(ws.OP_PING, b"still there?", mask=False),
        text_frame(progress_text),
        text_frame(msg("executing", node=None, prompt_id="other")),  # someone else's prompt
        text_frame(msg("executing", node=None, prompt_id="p1")),
    ]
    assert len(fake.frames[6]) > 130
    log = tmp_path / "log.txt"
    with open(log, "w") as stream:
        paths = qw.run(workflow(), fake.url, ["Reference.image=ref.png", "7.seed=42", "9.text=a dancer"],
                       str(tmp_path / "outs"), timeout=20, client_id="me", report=qw.Reporter(stream=stream))
    assert [str(p.relative_to(tmp_path / "outs")) for p in paths] == ["out_00001_.png", "vids/clip.mp4", "x/evil.png"]
    assert [p.read_bytes() for p in paths] == [b"PNG-1", b"MP4" * 1000, b"EVIL"]
    assert sorted(p.name for p in (tmp_path / "outs").rglob("*")) == ["clip.mp4", "evil.png", "out_00001_.png",
                                                                     "vids", "x"]  # no temporary files left
    assert fake.uploads == [{"type": (None, b"input"), "overwrite": (None, b"true"),
                             "image": ("ref.png", b"\x89PNG local")}]
    (sent,) = fake.prompts
    assert sent["client_id"] == "me" == fake.client_id
    assert sent["prompt"]["12"]["inputs"]["image"] == "ref.png"
    assert sent["prompt"]["7"]["inputs"] == {"seed": 42, "steps": 20, "model": ["4", 0]}
    assert sent["prompt"]["9"]["inputs"]["text"] == "a dancer"
    assert fake.ws_done.wait(5)
    assert fake.client_frames == [(ws.OP_PONG, b"still there?"), (ws.OP_CLOSE, (1000).to_bytes(2, "big"))]
    assert fake.posts == []  # nothing cancelled
    text = log.read_text()
    assert "cached nodes: 4" in text and "running node 7 (KSampler)" in text
    assert "node 7 (KSampler): 1/2 (50%)" in text and "node 7 (KSampler): 2/2 (100%)" in text


def test_a_failing_node_is_reported_with_its_traceback(fake, tmp_path):
    fake.frames = [text_frame(msg("execution_error", prompt_id="p1", node_id="12", node_type="LoadImage",
                                  exception_type="FileNotFoundError", exception_message="no such file",
                                  traceback=["Traceback:\n", '  File "nodes.py", line 3, in load\n']))]
    with pytest.raises(qw.ExecutionFailed) as e:
        qw.run(workflow(), fake.url, [], str(tmp_path), timeout=20)
    assert str(e.value) == ('ComfyUI failed in node 12 (LoadImage "Reference"): FileNotFoundError: no such file\n'
                            "traceback (last lines):\n  Traceback:\n    File \"nodes.py\", line 3, in load")


def test_a_rejected_prompt_exits_1_with_the_node_errors(fake, tmp_path, capsys):
    fake.reject = {"error": {"message": "Prompt outputs failed validation", "details": ""}, "node_errors": {
        "7": {"class_type": "KSampler", "errors": [{"message": "Value 0 smaller than min of 1", "details": "steps"}]}}}
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(workflow()))
    assert qw.main([str(path), "--server", fake.url, "--set", "7.steps=0", "--out", str(tmp_path), "--quiet"]) == 1
    assert capsys.readouterr().err == ("ComfyUI refused the workflow: Prompt outputs failed validation\n"
                                       "  node 7 (KSampler):\n    - Value 0 smaller than min of 1: steps\n")
    assert qw.main([str(path), "--server", fake.url, "--set", "7.step=0", "--quiet"]) == 2


def test_a_timeout_cancels_the_prompt(fake, tmp_path):
    fake.frames = [text_frame(msg("executing", node="7", prompt_id="p1"))]  # and then nothing
    with pytest.raises(qw.RunTimeout, match="cancelled prompt p1") as e:
        qw.run(workflow(), fake.url, [], str(tmp_path), timeout=0.5)
    assert e.value.exit_code == 3
    assert fake.posts == [("/queue", {"delete": ["p1"]}), ("/interrupt", {"prompt_id": "p1"})]


def test_without_a_websocket_the_history_is_polled(fake, tmp_path, monkeypatch):
    def refuse(cls, url, timeout=10.0):
        raise ws.WebSocketError("the server refused the WebSocket: HTTP/1.1 404")

    monkeypatch.setattr(ws.WebSocket, "connect", classmethod(refuse))
    fake.history["p1"]["status"]["messages"] = [["execution_start", {"prompt_id": "p1"}],
                                                ["execution_success", {"prompt_id": "p1"}]]
    paths = qw.run(workflow(), fake.url, [], str(tmp_path / "o"), timeout=20)
    assert len(paths) == 3
    fake.history["p1"]["status"]["messages"][1] = ["execution_interrupted", {"prompt_id": "p1", "node_id": "7"}]
    with pytest.raises(qw.ExecutionInterrupted, match="in node 7 \\(KSampler\\)"):
        qw.run(workflow(), fake.url, [], str(tmp_path / "o"), timeout=20)


def test_an_unreachable_server_is_said_plainly(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(qw.ServerError, match=f"cannot reach ComfyUI at http://127.0.0.1:{port}"):
        qw.run(workflow(), f"127.0.0.1:{port}", [], str(tmp_path), timeout=5)
