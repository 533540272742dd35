"""A minimal WebSocket client (RFC 6455), standard library only, for following a ComfyUI server's ``/ws``.

Enough of the protocol for one long-lived connection that mostly receives: the opening handshake over
``ws://`` or ``wss://``, masked client frames, fragmented messages, ping/pong, close. Binary frames are
delivered like text ones (the caller skips ComfyUI's preview images). Used by ``queue_workflow.py``.
"""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import time
import urllib.parse
from collections import deque


class WebSocketError(Exception):
    """The WebSocket handshake or a frame broke the protocol."""


class ConnectionClosed(WebSocketError):
    """The WebSocket closed (close frame or end of stream)."""


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_KNOWN_OPCODES = {OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG}


def ws_accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value the server must answer to ``key`` (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode("ascii")).digest()).decode("ascii")


def apply_mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte masking key (masking and unmasking are the same)."""
    n = len(payload)
    if n == 0:
        return b""
    mask = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes = b"", mask: bool = True, mask_key: bytes | None = None) -> bytes:
    """One final frame; clients must mask (``mask_key`` fixes the key, for tests)."""
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        header = bytes([0x80 | opcode, mask_bit | n])
    elif n < 1 << 16:
        header = bytes([0x80 | opcode, mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, mask_bit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return header + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return header + key + apply_mask(payload, key)


class FrameParser:
    """Sans-IO RFC 6455 reader: ``feed(bytes)`` -> complete messages as (opcode, payload).

    Fragmented messages come out whole under their first frame's opcode; control frames (which may sit
    between fragments) come out as they arrive. Masked frames are unmasked.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._fragment_opcode: int | None = None
        self._fragments: list[bytes] = []

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        messages = []
        while (frame := self._take_frame()) is not None:
            fin, opcode, payload = frame
            if opcode >= OP_CLOSE:
                if not fin or len(payload) > 125:
                    raise WebSocketError("a fragmented or oversized control frame")
                messages.append((opcode, payload))
            elif opcode == OP_CONT:
                if self._fragment_opcode is None:
                    raise WebSocketError("a continuation frame without a first frame")
                self._fragments.append(payload)
                if fin:
                    messages.append((self._fragment_opcode, b"".join(self._fragments)))
                    self._fragment_opcode, self._fragments = None, []
            else:
                if self._fragment_opcode is not None:
                    raise WebSocketError("a new message before the previous one finished")
                if fin:
                    messages.append((opcode, payload))
                else:
                    self._fragment_opcode, self._fragments = opcode, [payload]
        return messages

    def _take_frame(self) -> tuple[bool, int, bytes] | None:
        b = self._buffer
        if len(b) < 2:
            return None
        fin, rsv, opcode = bool(b[0] & 0x80), b[0] & 0x70, b[0] & 0x0F
        if rsv or opcode not in _KNOWN_OPCODES:
            raise WebSocketError(f"an unsupported frame (opcode {opcode:#x}, reserved bits {rsv >> 4:#x})")
        masked, length, pos = bool(b[1] & 0x80), b[1] & 0x7F, 2
        if length == 126:
            if len(b) < 4:
                return None
            length, pos = int.from_bytes(b[2:4], "big"), 4
        elif length == 127:
            if len(b) < 10:
                return None
            length, pos = int.from_bytes(b[2:10], "big"), 10
        key = b""
        if masked:
            if len(b) < pos + 4:
                return None
            key, pos = bytes(b[pos:pos + 4]), pos + 4
        if len(b) < pos + length:
            return None
        payload = bytes(b[pos:pos + length])
        del b[:pos + length]
        return fin, opcode, apply_mask(payload, key) if masked else payload


class WebSocket:
    """A minimal blocking WebSocket client: text messages in, pings answered, binary frames skipped."""

    def __init__(self, sock: socket.socket, leftover: bytes = b"") -> None:
        self.sock = sock
        self.parser = FrameParser()
        self.pending: deque[tuple[int, bytes]] = deque(self.parser.feed(leftover))
        self.closed = False

    @classmethod
    def connect(cls, url: str, timeout: float = 10.0) -> "WebSocket":
        """Open ``ws://`` / ``wss://`` ``url`` and do the HTTP Upgrade handshake."""
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme == "wss"
        host, port = parts.hostname or "localhost", parts.port or (443 if secure else 80)
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            if secure:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            key = base64.b64encode(os.urandom(16)).decode("ascii")
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            host_header = host if parts.port is None else f"{host}:{port}"
            sock.sendall((f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n").encode("ascii"))
            response = b""
            while b"\r\n\r\n" not in response:
                chunk = sock.recv(4096)
                if not chunk or len(response) > 65536:
                    raise WebSocketError("the server closed the connection during the handshake")
                response += chunk
            head, _, leftover = response.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            if len(lines[0].split()) < 2 or lines[0].split()[1] != "101":
                raise WebSocketError(f"the server refused the WebSocket: {lines[0]}")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            if headers.get("sec-websocket-accept") != ws_accept_key(key):
                raise WebSocketError("the server answered a wrong Sec-WebSocket-Accept")
            return cls(sock, leftover)
        except BaseException:
            sock.close()
            raise

    def send(self, opcode: int, payload: bytes = b"") -> None:
        self.sock.sendall(encode_frame(opcode, payload))

    def recv_text(self, timeout: float) -> str | None:
        """The next text message, or None when none arrives within ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while True:
            while self.pending:
                opcode, payload = self.pending.popleft()
                if opcode == OP_TEXT:
                    return payload.decode("utf-8", errors="replace")
                if opcode == OP_PING:
                    self.send(OP_PONG, payload)
                elif opcode == OP_CLOSE:
                    self.close(payload[:2] or (1000).to_bytes(2, "big"))
                    raise ConnectionClosed("the server closed the WebSocket")
                # binary (previews) and pongs are skipped
            left = end - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            if not data:
                self.closed = True
                raise ConnectionClosed("the server dropped the WebSocket")
            self.pending.extend(self.parser.feed(data))

    def close(self, code: bytes = (1000).to_bytes(2, "big")) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.send(OP_CLOSE, code)
        except OSError:
            pass
        self.sock.close()
