"""What the grader reads back from a worker is bounded: size, nesting, and one tensor per payload."""
from __future__ import annotations

import json
import socket
import struct

import pytest
import torch

from autograder.sandbox import wire

pytestmark = pytest.mark.grader


def frame(header: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">Q", len(header)) + header + payload


def received(data: bytes, max_bytes: int = wire.MAX_MESSAGE_BYTES):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(data)
        theirs.shutdown(socket.SHUT_WR)
        return wire.receive(ours, max_bytes)


def test_a_header_nested_past_the_json_reader_is_a_protocol_error():
    header = b'{"sizes": [], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(wire.ProtocolError, match="nested too deeply"):
        received(frame(header))


def test_payloads_over_the_limit_are_refused_before_they_are_read():
    header = json.dumps({"sizes": [2**30]}).encode()   # announces 1 GiB, sends none of it
    with pytest.raises(wire.TooLarge, match="1024.0 MiB of tensor data, over the 16.0 MiB"):
        received(frame(header), wire.reply_limit([]))


def test_the_reply_limit_grows_with_the_request_but_never_past_the_message_limit():
    assert wire.reply_limit([]) == wire.REPLY_FLOOR_BYTES
    assert wire.reply_limit([b"x" * 2**20]) == wire.REPLY_FACTOR * 2**20
    assert wire.reply_limit([b"x" * 2**26]) == wire.MAX_MESSAGE_BYTES


def test_one_payload_cannot_back_two_tensors():
    tensor = {"t": "tensor", "payload": 0, "dtype": "float32", "shape": [256], "device": "cpu"}
    payloads = [bytearray(1024)]
    with pytest.raises(wire.ProtocolError, match="claimed by two tensors"):
        wire.decode({"t": "list", "items": [tensor] * 1000}, payloads)


def test_bool_bytes_other_than_0_and_1_read_as_true():
    header, payloads = received(frame(json.dumps({"sizes": [3]}).encode(), bytes([0, 1, 7])))
    value = wire.decode({"t": "tensor", "payload": 0, "dtype": "bool", "shape": [3], "device": "cpu"}, payloads)
    assert value.tolist() == [False, True, True] and value.dtype is torch.bool


def test_a_message_comes_back_whole_however_it_arrives_and_nothing_may_follow_it():
    payloads: list[bytes] = []
    tree = wire.encode((torch.arange(6.0).reshape(2, 3), torch.ones(70_000, dtype=torch.uint8)), payloads)
    message = frame(json.dumps({"value": tree, "sizes": [len(p) for p in payloads]}).encode(), b"".join(payloads))
    ours, theirs = socket.socketpair()
    with ours, theirs:
        for start in range(0, len(message), 4096):   # in pieces, as a busy sender's bytes may arrive
            theirs.sendall(message[start:start + 4096])
        header, data = wire.receive(ours)
    value = wire.decode(header["value"], data)
    assert torch.equal(value[0], torch.arange(6.0).reshape(2, 3)) and torch.equal(value[1], torch.ones(70_000).byte())
    small = frame(json.dumps({"sizes": [3]}).encode(), b"abc")
    assert received(small)[1] == [bytearray(b"abc")]
    with pytest.raises(wire.ProtocolError, match="more bytes arrived than the message holds"):
        received(small + b"unasked")
