"""The RFC 6455 client of the headless tool: handshake key, frames (the RFC's own examples), protocol errors,
and a socket pair for pings, binary frames and closing."""
import importlib.util
import socket
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "websocket_client", Path(__file__).resolve().parents[2] / "tools" / "websocket_client.py")
wsc = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("websocket_client", wsc)
_spec.loader.exec_module(wsc)


def test_accept_key_matches_rfc6455_example():
    assert wsc.ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_frames_from_rfc6455_examples_byte_by_byte():
    unmasked = bytes([0x81, 0x05]) + b"Hello"
    masked = bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
    fragmented = bytes([0x01, 0x03]) + b"Hel" + bytes([0x89, 0x02]) + b"hi" + bytes([0x80, 0x02]) + b"lo"
    short = bytes(range(256))
    long = bytes(65536 + 3)
    sixteen = bytes([0x82, 0x7E, 0x01, 0x00]) + short
    sixty_four = bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 3]) + long
    stream = unmasked + masked + fragmented + sixteen + sixty_four
    parser, got = wsc.FrameParser(), []
    for i in range(0, 300):  # the first frames one byte at a time, then the rest at once
        got += parser.feed(stream[i:i + 1])
    got += parser.feed(stream[300:])
    assert got == [(wsc.OP_TEXT, b"Hello"), (wsc.OP_TEXT, b"Hello"), (wsc.OP_PING, b"hi"), (wsc.OP_TEXT, b"Hello"),
                   (wsc.OP_BINARY, short), (wsc.OP_BINARY, long)]
    assert wsc.encode_frame(wsc.OP_TEXT, b"Hello", mask_key=bytes([0x37, 0xFA, 0x21, 0x3D])) == masked
    assert wsc.encode_frame(wsc.OP_TEXT, b"Hello", mask=False) == unmasked


def test_encoded_frames_round_trip_at_every_length_boundary():
    for n in (0, 125, 126, 65535, 65536):
        payload = bytes(i % 251 for i in range(n))
        frame = wsc.encode_frame(wsc.OP_BINARY, payload)
        assert frame[1] & 0x80  # a client masks
        assert wsc.FrameParser().feed(frame) == [(wsc.OP_BINARY, payload)]


def test_protocol_errors_are_refused():
    with pytest.raises(wsc.WebSocketError, match="continuation"):
        wsc.FrameParser().feed(bytes([0x80, 0x01]) + b"x")
    with pytest.raises(wsc.WebSocketError, match="unsupported"):
        wsc.FrameParser().feed(bytes([0xC1, 0x01]) + b"x")  # RSV1 without an extension
    with pytest.raises(wsc.WebSocketError, match="control"):
        wsc.FrameParser().feed(bytes([0x09, 0x00]))  # a fragmented ping


def test_socket_reader_answers_pings_skips_binary_and_closes():
    ours, theirs = socket.socketpair()
    try:
        ws = wsc.WebSocket(ours, leftover=wsc.encode_frame(wsc.OP_PING, b"p1", mask=False))
        theirs.sendall(wsc.encode_frame(wsc.OP_BINARY, b"\x00preview", mask=False)
                       + bytes([0x01, 0x04]) + b'{"a"' + bytes([0x80, 0x04]) + b": 1}")
        assert ws.recv_text(1.0) == '{"a": 1}'
        assert ws.recv_text(0.05) is None
        theirs.sendall(wsc.encode_frame(wsc.OP_CLOSE, (1001).to_bytes(2, "big"), mask=False))
        with pytest.raises(wsc.ConnectionClosed):
            ws.recv_text(1.0)
        theirs.settimeout(1.0)
        replies = wsc.FrameParser().feed(theirs.recv(1024) + theirs.recv(1024))
        assert replies == [(wsc.OP_PONG, b"p1"), (wsc.OP_CLOSE, (1001).to_bytes(2, "big"))]
    finally:
        theirs.close()
