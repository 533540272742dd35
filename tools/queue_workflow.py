#!/usr/bin/env python3
"""Queue an API-format ComfyUI workflow headlessly, follow its progress, download its outputs.

Standalone on purpose: the Python standard library only (3.10+). It imports neither torch nor this pack,
so it runs from any Python on any machine that can reach the ComfyUI server.

Usage::

    python tools/queue_workflow.py WORKFLOW.api.json [--server http://127.0.0.1:8188]
        [--set NODE.INPUT=VALUE ...] [--out outputs/] [--timeout SECONDS] [--client-id ID] [--quiet]

    python tools/queue_workflow.py workflows/unianimate.api.json --server http://127.0.0.1:8188 \\
        --set 12.image=ref.png --set 7.seed=42 --set 9.text="a dancer" --out outputs/

The workflow must be in the API format (in ComfyUI: Workflow menu > Export (API), "Save (API)" in older
versions); a canvas (UI) workflow is refused.

``--set NODE.INPUT=VALUE`` (repeatable) changes one input before queueing:

* NODE is a node id, or a node title (``_meta.title``) that only one node has.
* VALUE is parsed as JSON when it parses (``42``, ``0.5``, ``true``, ``[1, 2]``), else kept as a string.
* If VALUE is not JSON and names an existing local image, video or audio file (by its extension), the file
  is uploaded to the server's input folder (``POST /upload/image``, overwriting a file of the same name)
  and the input is set to the uploaded name: ``--set 12.image=ref.png`` feeds a local picture to LoadImage.
  To pass a server-side file name literally, give it as a JSON string: ``--set '12.image="ref.png"'``.

Progress goes to stderr (``--quiet`` silences it); the saved output files are printed on stdout, one per
line. Outputs (every ``images`` / ``gifs`` / ``video`` / ``audio`` ... entry of ``/history``) land in
``--out``, keeping their server subfolders.

Exit status: 0 done; 1 the server refused or failed the workflow (its errors are printed); 2 a bad
workflow file or ``--set``; 3 ``--timeout`` ran out (the prompt is then cancelled on the server);
130 Ctrl-C (the prompt is cancelled on the server too).

From Python (the integration tests do this)::

    from queue_workflow import run
    paths = run(workflow_dict, "http://127.0.0.1:8188", ["7.seed=42"], "outputs", timeout=600)
"""
from __future__ import annotations

import argparse
import copy
import json
import mimetypes
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Sequence, TextIO

# the RFC 6455 client beside this file, however this file is run (as a script, or loaded by path)
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
from websocket_client import ConnectionClosed, WebSocket, WebSocketError  # noqa: E402

MEDIA_EXTENSIONS = frozenset({
    ".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff",      # images
    ".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v",                        # videos
    ".wav", ".mp3", ".flac", ".ogg", ".m4a",                                # audio
})
HTTP_TIMEOUT_S = 60.0          # per socket operation when no --timeout is tighter
HISTORY_GRACE_S = 60.0         # how long the history may lag behind "done" on the WebSocket
POLL_INTERVAL_S = 0.5
TRACEBACK_LINES = 12

# ------------------------------------------------------------------------------------------ errors


class ClientError(Exception):
    """A run that cannot go on; ``exit_code`` is what the command exits with."""
    exit_code = 1


class WorkflowError(ClientError):
    """The workflow file or a --set is wrong (the user's to fix before queueing)."""
    exit_code = 2


class ServerError(ClientError):
    """The server cannot be reached or answered something unexpected."""


class PromptRejected(ClientError):
    """POST /prompt answered 400: the workflow failed ComfyUI's validation."""


class ExecutionFailed(ClientError):
    """A node raised while the workflow ran."""


class ExecutionInterrupted(ClientError):
    """The run was interrupted on the server (someone pressed Cancel, or /interrupt was called)."""


class RunTimeout(ClientError):
    """--timeout ran out."""
    exit_code = 3


class Cancelled(ClientError):
    """Ctrl-C: the prompt was cancelled on the server."""
    exit_code = 130


# ------------------------------------------------------------------------------------ deadlines


class Deadline:
    """The end of the whole run (``--timeout``); None = no end."""

    def __init__(self, seconds: float | None) -> None:
        self.end = None if seconds is None else time.monotonic() + float(seconds)

    def remaining(self) -> float | None:
        return None if self.end is None else self.end - time.monotonic()

    def check(self) -> None:
        left = self.remaining()
        if left is not None and left <= 0:
            raise RunTimeout("the run took longer than --timeout")

    def cap(self, seconds: float) -> float:
        """``seconds`` shortened to what is left; raises RunTimeout once nothing is."""
        self.check()
        left = self.remaining()
        return seconds if left is None else max(0.01, min(seconds, left))


# --------------------------------------------------------------------------------- the workflow


def check_api_format(data: Any, source: str = "the workflow") -> dict[str, dict]:
    """Return the API-format prompt in ``data`` (also unwraps a saved ``{"prompt": {...}}`` body).

    Refuses the canvas (UI) format, recognised by its ``nodes`` and ``links`` keys.
    """
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise WorkflowError(
            f"{source} is a canvas (UI) workflow, not the API format. In ComfyUI export it with "
            f'"Save (API)" (Workflow menu > Export (API)) and pass that file.')
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data:
        data = data["prompt"]  # a saved POST /prompt body
    if not isinstance(data, dict) or not data:
        raise WorkflowError(f"{source} is not an API-format workflow: expected a JSON object of nodes "
                            '{"<id>": {"class_type": ..., "inputs": {...}}, ...}')
    for node_id, node in data.items():
        if not isinstance(node, dict) or "class_type" not in node or not isinstance(node.get("inputs", {}), dict):
            raise WorkflowError(f"{source} is not an API-format workflow: node {node_id!r} has no "
                                "class_type/inputs")
    return data


def load_workflow(path: str | Path) -> dict[str, dict]:
    """Read an API-format workflow JSON file (see check_api_format)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise WorkflowError(f"cannot read the workflow {path}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise WorkflowError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    return check_api_format(data, str(path))


def describe_node(node_id: str, workflow: dict[str, dict] | None) -> str:
    """``12 (LoadImage "Reference")`` for messages; a sub-node id ``12:3`` falls back to its parent."""
    node_id = str(node_id)
    node = (workflow or {}).get(node_id)
    if node is None:
        parent = node_id.split(":")[0]
        if ":" in node_id and workflow and parent in workflow:
            return f"{node_id} (inside {describe_node(parent, workflow)})"
        return node_id
    class_type = node.get("class_type", "?")
    title = (node.get("_meta") or {}).get("title")
    return f'{node_id} ({class_type} "{title}")' if title and title != class_type else f"{node_id} ({class_type})"


# -------------------------------------------------------------------------------------- --set


@dataclass(frozen=True)
class Assignment:
    """One ``--set NODE.INPUT=VALUE``."""
    node: str          # a node id or title, as typed
    input: str
    raw: str           # VALUE as typed
    value: Any         # VALUE parsed (JSON when it parses, else the text)
    is_json: bool


def parse_set(text: str) -> Assignment:
    """Parse ``NODE.INPUT=VALUE``; NODE may contain dots (a title), INPUT is after the last one."""
    key, sep, raw = text.partition("=")
    node, dot, name = key.strip().rpartition(".")
    if not sep or not dot or not node.strip() or not name.strip():
        raise WorkflowError(f"--set {text!r}: expected NODE.INPUT=VALUE, e.g. 7.seed=42 or 12.image=ref.png")
    try:
        value, is_json = json.loads(raw), True
    except ValueError:
        value, is_json = raw, False
    return Assignment(node.strip(), name.strip(), raw, value, is_json)


def resolve_node(workflow: dict[str, dict], ref: str) -> str:
    """The node id that ``ref`` names: an id, else the one node whose title is ``ref``."""
    if ref in workflow:
        return ref
    matches = [nid for nid, node in workflow.items() if (node.get("_meta") or {}).get("title") == ref]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise WorkflowError(f"--set: the title {ref!r} is used by nodes {', '.join(matches)}; use a node id")
    listing = "\n".join(f"  {describe_node(nid, workflow)}" for nid in workflow)
    raise WorkflowError(f"--set: no node has the id or title {ref!r}. The workflow's nodes:\n{listing}")


def _show_input(value: Any) -> str:
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int):
        return f"<- output {value[1]} of node {value[0]}"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def uploadable_file(raw: str) -> Path | None:
    """The local media file ``raw`` names (an existing file with an image/video/audio extension), or None."""
    if not raw or "\n" in raw:
        return None
    path = Path(raw).expanduser()
    try:
        return path if path.suffix.lower() in MEDIA_EXTENSIONS and path.is_file() else None
    except OSError:  # a name too long to stat, etc.
        return None


def apply_sets(workflow: dict[str, dict], sets: Sequence[str],
               upload: Callable[[Path], str] | None = None) -> dict[str, dict]:
    """A copy of ``workflow`` with every ``--set`` applied.

    All sets are checked before anything is uploaded, so a typo in the last one costs no upload. A value
    naming a local media file goes through ``upload`` (path -> server name) when one is given.
    """
    result = copy.deepcopy(workflow)
    resolved = []
    for text in sets:
        a = parse_set(text)
        node_id = resolve_node(result, a.node)
        inputs = result[node_id].setdefault("inputs", {})
        if a.input not in inputs:
            listing = "\n".join(f"  {name} = {_show_input(v)}" for name, v in inputs.items()) or "  (none)"
            raise WorkflowError(f"--set {text!r}: node {describe_node(node_id, result)} has no input "
                                f"{a.input!r}. Its inputs:\n{listing}")
        resolved.append((node_id, a))
    for node_id, a in resolved:
        value = a.value
        local = None if a.is_json or upload is None else uploadable_file(a.raw)
        if local is not None:
            value = upload(local)
        result[node_id]["inputs"][a.input] = value
    return result


# ------------------------------------------------------------------------------------------ HTTP


def normalize_server(server: str) -> str:
    """``127.0.0.1:8188`` -> ``http://127.0.0.1:8188``; no trailing slash (a path prefix is kept)."""
    server = server.strip()
    if "://" not in server:
        server = "http://" + server
    parts = urllib.parse.urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise WorkflowError(f"--server {server!r}: expected http://HOST:PORT")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # direct, as the WebSocket is


def http_request(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                 timeout: float = HTTP_TIMEOUT_S) -> tuple[int, bytes]:
    """One HTTP request -> (status, body); HTTP error statuses are returned, not raised."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise RunTimeout(f"{method} {url} timed out") from None
        raise ServerError(f"cannot reach ComfyUI at {url}: {reason}") from None


def http_json(method: str, url: str, payload: Any = None, timeout: float = HTTP_TIMEOUT_S) -> tuple[int, Any]:
    """A JSON request -> (status, decoded JSON body or None when the body is not JSON)."""
    body = None if payload is None else json.dumps(payload).encode("utf-8")
    headers = {"Content-Type": "application/json"} if body is not None else {}
    status, data = http_request(method, url, body, headers, timeout)
    try:
        return status, json.loads(data) if data else None
    except ValueError:
        return status, None


def encode_multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]],
                     boundary: str | None = None) -> tuple[bytes, str]:
    """multipart/form-data body and its Content-Type; ``files`` maps field -> (file name, bytes, type)."""
    boundary = boundary or "----queue-workflow-" + uuid.uuid4().hex

    def quoted(text: str) -> str:
        return text.replace("\\", "\\\\").replace('"', "%22").replace("\r", "").replace("\n", "")

    out = bytearray()
    for name, value in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{quoted(name)}\"\r\n\r\n"
                f"{value}\r\n").encode("utf-8")
    for name, (filename, content, content_type) in files.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{quoted(name)}\"; "
                f"filename=\"{quoted(filename)}\"\r\nContent-Type: {content_type}\r\n\r\n").encode("utf-8")
        out += content + b"\r\n"
    out += f"--{boundary}--\r\n".encode("ascii")
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def upload_file(server: str, path: Path, timeout: float = HTTP_TIMEOUT_S) -> str:
    """Upload a local file into the server's input folder; returns the name a loader takes."""
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    body, header = encode_multipart({"type": "input", "overwrite": "true"},
                                    {"image": (path.name, path.read_bytes(), content_type)})
    status, data = http_request("POST", f"{server}/upload/image", body, {"Content-Type": header}, timeout)
    try:
        answer = json.loads(data)
        name, subfolder = answer["name"], answer.get("subfolder") or ""
    except (ValueError, KeyError, TypeError):
        raise ServerError(f"uploading {path} failed: HTTP {status} {data[:200]!r}") from None
    if status != 200:
        raise ServerError(f"uploading {path} failed: HTTP {status}")
    return f"{subfolder}/{name}" if subfolder else name


# ----------------------------------------------------------------------------------- the prompt


def format_prompt_error(body: Any, workflow: dict[str, dict] | None = None) -> str:
    """A readable text for POST /prompt's 400 answer: the error, then each node's errors."""
    body = body if isinstance(body, dict) else {"error": str(body)}
    error, node_errors = body.get("error"), body.get("node_errors") or {}
    if isinstance(error, dict):
        lines = [f"ComfyUI refused the workflow: {error.get('message') or error.get('type') or 'invalid prompt'}"]
        details = str(error.get("details") or "")
        if details and not node_errors:
            lines.append("  " + details.replace("\n", "\n  "))
    else:
        lines = [f"ComfyUI refused the workflow: {error or 'invalid prompt'}"]
    for node_id, entry in node_errors.items():
        entry = entry if isinstance(entry, dict) else {}
        node = dict((workflow or {}).get(node_id, {}))
        node.setdefault("class_type", entry.get("class_type", "?"))
        lines.append(f"  node {describe_node(node_id, {node_id: node})}:")
        for err in entry.get("errors") or []:
            message = str(err.get("message", "")) if isinstance(err, dict) else str(err)
            details = str(err.get("details", "")) if isinstance(err, dict) else ""
            if len(details) > 400:
                details = details[:397] + "..."
            lines.append(f"    - {message}: {details}" if details else f"    - {message}")
    return "\n".join(lines)


def queue_prompt(server: str, workflow: dict[str, dict], client_id: str, timeout: float = HTTP_TIMEOUT_S,
                 warn: Callable[[str], None] | None = None) -> str:
    """POST /prompt; returns the prompt id, raises PromptRejected with the readable node errors."""
    status, body = http_json("POST", f"{server}/prompt", {"prompt": workflow, "client_id": client_id}, timeout)
    if status == 400:
        raise PromptRejected(format_prompt_error(body, workflow))
    if status != 200 or not isinstance(body, dict) or "prompt_id" not in body:
        raise ServerError(f"POST /prompt answered HTTP {status}: {str(body)[:300]}")
    if body.get("node_errors") and warn is not None:  # some outputs failed validation, the others run
        warn(format_prompt_error({"error": "some outputs will not run", "node_errors": body["node_errors"]},
                                 workflow))
    return str(body["prompt_id"])


def cancel_prompt(server: str, prompt_id: str) -> None:
    """Drop the prompt from the queue and interrupt it if it runs (best effort).

    ComfyUI versions whose /interrupt ignores the prompt id interrupt whatever runs.
    """
    for path, payload in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
        try:
            http_json("POST", server + path, payload, timeout=5.0)
        except ClientError:
            pass


def ws_url(server: str, client_id: str) -> str:
    """The /ws address for ``server`` (http -> ws, https -> wss)."""
    scheme = "wss" if server.startswith("https:") else "ws"
    rest = server.split("://", 1)[1]
    return f"{scheme}://{rest}/ws?clientId={urllib.parse.quote(client_id)}"


# ------------------------------------------------------------------------------------- progress


class Reporter:
    """Progress lines on stderr (a rewritten line on a terminal); nothing with quiet."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._open_line = False
        self._last: tuple[str, int] | None = None

    def end_line(self) -> None:
        """Finish a rewritten progress line, so what follows starts on its own line."""
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False

    def info(self, text: str) -> None:
        if self.quiet:
            return
        self.end_line()
        self.stream.write(text + "\n")
        self.stream.flush()

    def progress(self, label: str, value: int, total: int) -> None:
        if self.quiet or total <= 0:
            return
        tenth = value * 10 // total
        if not self.tty and value != total and self._last == (label, tenth):
            return  # in a log, one line per tenth is plenty
        self._last = (label, tenth)
        line = f"  {label}: {value}/{total} ({100 * value // total}%)"
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
            self._open_line = True
            self.stream.flush()
        else:
            self.info(line)


def format_execution_error(data: dict, workflow: dict[str, dict] | None = None) -> str:
    """A readable text for an ``execution_error`` message: the exception, the node, the traceback's end."""
    node_id = str(data.get("node_id"))
    known = workflow if workflow and node_id in workflow else {node_id: {"class_type": data.get("node_type", "?")}}
    node = describe_node(node_id, known)
    lines = [f"ComfyUI failed in node {node}: "
             f"{data.get('exception_type', 'Exception')}: {data.get('exception_message', '').strip()}"]
    tb = "".join(data.get("traceback") or []).rstrip().splitlines()
    if tb:
        lines.append("traceback (last lines):")
        lines += ["  " + line for line in tb[-TRACEBACK_LINES:]]
    return "\n".join(lines)


def handle_message(message: Any, prompt_id: str, workflow: dict[str, dict], report: Reporter) -> bool:
    """React to one server message about our prompt; True once it finished well.

    Raises ExecutionFailed / ExecutionInterrupted for the failed ends.
    """
    if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
        return False
    kind, data = message.get("type"), message["data"]
    if data.get("prompt_id", prompt_id) != prompt_id:
        return False  # another prompt's news
    if kind == "execution_start":
        report.info(f"prompt {prompt_id} started")
    elif kind == "execution_cached":
        cached = data.get("nodes") or []
        if cached:
            report.info(f"cached nodes: {', '.join(map(str, cached))}")
    elif kind == "executing":
        if data.get("node") is None:
            return True
        report.info(f"running node {describe_node(str(data['node']), workflow)}")
    elif kind == "progress":
        report.progress(f"node {describe_node(str(data.get('node')), workflow)}",
                        int(data.get("value", 0)), int(data.get("max", 0)))
    elif kind == "execution_success":
        return True
    elif kind == "execution_error":
        raise ExecutionFailed(format_execution_error(data, workflow))
    elif kind == "execution_interrupted":
        raise ExecutionInterrupted(f"the run was interrupted on the server "
                                   f"(in node {describe_node(str(data.get('node_id')), workflow)})")
    return False


def follow_progress(ws: WebSocket, prompt_id: str, workflow: dict[str, dict], deadline: Deadline,
                    report: Reporter) -> None:
    """Print the run's progress from the WebSocket until it ends; raises on failure or timeout."""
    while True:
        text = ws.recv_text(deadline.cap(1.0))
        if text is None:
            continue
        try:
            message = json.loads(text)
        except ValueError:
            continue
        if handle_message(message, prompt_id, workflow, report):
            return


def fetch_history(server: str, prompt_id: str, deadline: Deadline, grace: float | None = None) -> dict:
    """GET /history/<id> until the prompt is in it (it lags a little behind the WebSocket)."""
    end = None if grace is None else time.monotonic() + grace
    while True:
        status, body = http_json("GET", f"{server}/history/{urllib.parse.quote(prompt_id)}",
                                 timeout=deadline.cap(HTTP_TIMEOUT_S))
        if status == 200 and isinstance(body, dict) and isinstance(body.get(prompt_id), dict):
            return body[prompt_id]
        if status != 200:
            raise ServerError(f"GET /history/{prompt_id} answered HTTP {status}")
        if end is not None and time.monotonic() > end:
            raise ServerError(f"prompt {prompt_id} finished but never appeared in /history")
        time.sleep(deadline.cap(POLL_INTERVAL_S))


def wait_by_polling(server: str, prompt_id: str, workflow: dict[str, dict], deadline: Deadline,
                    report: Reporter) -> None:
    """Without a WebSocket: wait for the prompt in /history, then replay its status messages for errors."""
    entry = fetch_history(server, prompt_id, deadline)
    for item in (entry.get("status") or {}).get("messages") or []:
        if isinstance(item, (list, tuple)) and len(item) == 2:
            handle_message({"type": item[0], "data": item[1]}, prompt_id, workflow, report)


# ------------------------------------------------------------------------------------- outputs


def iter_output_files(outputs: dict) -> Iterator[dict]:
    """Every file entry (a dict with ``filename``) of a history's outputs: images, gifs, video, audio..."""
    for node_output in (outputs or {}).values():
        if not isinstance(node_output, dict):
            continue
        for entries in node_output.values():
            if isinstance(entries, list):
                for entry in entries:
                    if isinstance(entry, dict) and entry.get("filename"):
                        yield entry


def _safe_relative(subfolder: str, filename: str) -> Path:
    """``subfolder/filename`` with no way out of the output folder."""
    parts = [p for p in PurePosixPath(str(subfolder).replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    name = PurePosixPath(str(filename).replace("\\", "/")).name
    if name in ("", ".", ".."):
        raise ServerError(f"the server listed an output with an odd name: {filename!r}")
    return Path(*parts, name)


def download_file(url: str, target: Path, timeout: float = HTTP_TIMEOUT_S) -> None:
    """Stream ``url`` into ``target`` atomically (a temporary file beside it, then a rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.part"  # open() keeps the umask's mode
    try:
        with open(tmp, "xb") as f:
            try:
                with _OPENER.open(urllib.request.Request(url), timeout=timeout) as response:
                    while chunk := response.read(1 << 20):
                        f.write(chunk)
            except urllib.error.HTTPError as e:
                raise ServerError(f"downloading {url} failed: HTTP {e.code}") from None
            except (urllib.error.URLError, OSError) as e:
                raise ServerError(f"downloading {url} failed: {getattr(e, 'reason', e)}") from None
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def download_outputs(server: str, prompt_id: str, out_dir: str | Path, deadline: Deadline,
                     report: Reporter | None = None) -> list[Path]:
    """Save every output file of the prompt into ``out_dir`` (server subfolders kept); returns the paths."""
    entry = fetch_history(server, prompt_id, deadline, grace=HISTORY_GRACE_S)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    seen = set()
    for item in iter_output_files(entry.get("outputs") or {}):
        key = (item.get("type", "output"), item.get("subfolder", ""), item["filename"])
        if key in seen:
            continue
        seen.add(key)
        query = urllib.parse.urlencode({"filename": key[2], "subfolder": key[1], "type": key[0]})
        target = out_dir / _safe_relative(key[1], key[2])
        download_file(f"{server}/view?{query}", target, deadline.cap(HTTP_TIMEOUT_S))
        saved.append(target)
    if not saved and report is not None:
        report.info("the workflow finished without output files (no Save/Preview node?)")
    return saved


# ------------------------------------------------------------------------------------------ run


def run(workflow: dict, server: str, sets: Sequence[str] = (), out_dir: str | Path = "outputs",
        timeout: float | None = None, *, client_id: str | None = None, quiet: bool = True,
        report: Reporter | None = None) -> list[Path]:
    """Apply ``sets``, queue ``workflow`` on ``server``, follow it, download its outputs into ``out_dir``.

    Returns the saved paths. Raises a ClientError subclass on any failure (its message is printable);
    on timeout or Ctrl-C the prompt is cancelled on the server first.
    """
    report = report or Reporter(quiet)
    deadline = Deadline(timeout)
    server = normalize_server(server)
    workflow = check_api_format(workflow)
    prompt = apply_sets(workflow, sets, upload=lambda p: upload_file(server, p, deadline.cap(HTTP_TIMEOUT_S)))
    client_id = client_id or uuid.uuid4().hex
    try:  # connect before queueing, so no message of ours is missed
        ws: WebSocket | None = WebSocket.connect(ws_url(server, client_id), deadline.cap(10.0))
    except (ConnectionRefusedError, socket.gaierror) as e:
        raise ServerError(f"cannot reach ComfyUI at {server}: {e}") from None
    except (OSError, WebSocketError) as e:
        ws = None
        report.info(f"no live progress (WebSocket: {e}); waiting on /history instead")
    prompt_id = None
    try:
        prompt_id = queue_prompt(server, prompt, client_id, deadline.cap(HTTP_TIMEOUT_S), warn=report.info)
        report.info(f"queued prompt {prompt_id} on {server}")
        try:
            if ws is None:
                raise ConnectionClosed("no WebSocket")
            follow_progress(ws, prompt_id, prompt, deadline, report)
        except (ConnectionClosed, WebSocketError, OSError) as e:
            if ws is not None:
                report.info(f"lost the WebSocket ({e}); waiting on /history instead")
            wait_by_polling(server, prompt_id, prompt, deadline, report)
    except KeyboardInterrupt:
        if prompt_id is not None:
            cancel_prompt(server, prompt_id)
        raise Cancelled(f"cancelled prompt {prompt_id}" if prompt_id else "cancelled") from None
    except RunTimeout as e:
        if prompt_id is not None:
            cancel_prompt(server, prompt_id)
            raise RunTimeout(f"{e}; cancelled prompt {prompt_id} on the server") from None
        raise
    finally:
        if ws is not None:
            ws.close()
    report.info(f"prompt {prompt_id} done; downloading its outputs")
    return download_outputs(server, prompt_id, out_dir, deadline, report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="queue_workflow.py",
        description="Queue an API-format ComfyUI workflow, follow its progress, download its outputs.",
        epilog="VALUE is JSON when it parses, else a string; an existing local image/video/audio file is "
               "uploaded to the server first. Exit: 0 ok, 1 server error, 2 bad input, 3 timeout, 130 Ctrl-C.")
    parser.add_argument("workflow", help='an API-format workflow JSON (ComfyUI: "Save (API)" / Export (API))')
    parser.add_argument("--server", default="http://127.0.0.1:8188", help="default: %(default)s")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.INPUT=VALUE",
                        help="change an input (NODE: id or unique title); repeatable")
    parser.add_argument("--out", default="outputs", help="folder for the outputs (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=None, metavar="S", help="limit for the whole run")
    parser.add_argument("--client-id", default=None, help="WebSocket client id (default: a new uuid)")
    parser.add_argument("--quiet", action="store_true", help="print only the saved paths and errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = Reporter(args.quiet)
    try:
        workflow = load_workflow(args.workflow)
        paths = run(workflow, args.server, args.sets, args.out, args.timeout,
                    client_id=args.client_id, report=report)
    except ClientError as e:
        report.end_line()
        print(f"error: {e}" if not isinstance(e, (PromptRejected, ExecutionFailed)) else str(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
