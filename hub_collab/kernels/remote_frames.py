"""Kernel messages in WebSocket frames, both protocols of jupyter_server's kernel WebSocket.

``v1.kernel.websocket.jupyter.org`` (:func:`decode_v1`, :func:`encode_v1`): the
kernel's own JSON parts behind a table of offsets, so the server does not
re-serialise them and we parse only what we deliver. The default protocol
(:func:`decode_json`): one JSON text frame per message with a ``channel`` field,
a binary frame only for a message with buffers. Decoders raise :class:`BadFrame`
on anything malformed; they never trust a length they have not checked.
"""

from __future__ import annotations

import json
import struct
from itertools import pairwise
from typing import Any


class BadFrame(ValueError):
    """A WebSocket frame that is not a kernel message."""


def as_message(
    header: Any, parent: Any, metadata: Any, content: Any, buffers: list[bytes]
) -> dict[str, Any]:
    if not isinstance(header, dict) or not isinstance(content, dict):
        raise BadFrame("header or content is not an object")
    return {
        "header": header,
        "parent_header": parent if isinstance(parent, dict) else {},
        "msg_type": header.get("msg_type", ""),
        "content": content,
        "metadata": metadata if isinstance(metadata, dict) else {},
        "buffers": buffers,
    }


def decode_v1(frame: bytes) -> tuple[str, dict[str, Any]]:
    """``(channel, message)`` of a ``v1.kernel.websocket.jupyter.org`` frame.

    Layout: ``n`` (u64 LE), ``n`` offsets (u64 LE), then the channel name and the
    parts (header, parent header, metadata, content, buffers...) between them.
    """
    size = len(frame)
    if size < 8:
        raise BadFrame("v1 frame too short")
    count = int.from_bytes(frame[:8], "little")
    if count < 6 or 8 * (count + 1) > size:
        raise BadFrame(f"v1 frame with {count} offsets")
    offsets = struct.unpack_from(f"<{count}Q", frame, 8)
    if (
        offsets[0] != 8 * (count + 1)
        or offsets[-1] > size
        or any(a > b for a, b in pairwise(offsets))
    ):
        raise BadFrame("v1 frame with bad offsets")
    try:
        channel = frame[offsets[0] : offsets[1]].decode()
        header, parent, metadata, content = (
            json.loads(frame[offsets[i] : offsets[i + 1]]) for i in range(1, 5)
        )
    except ValueError as exc:
        raise BadFrame(f"undecodable v1 frame: {exc}") from exc
    buffers = [frame[offsets[i] : offsets[i + 1]] for i in range(5, count - 1)]
    return channel, as_message(header, parent, metadata, content, buffers)


def encode_v1(channel: str, parts: list[bytes]) -> bytes:
    """A ``v1.kernel.websocket.jupyter.org`` frame of already packed parts."""
    name = channel.encode()
    count = len(parts) + 2
    offsets = [8 * (count + 1)]
    offsets.append(offsets[0] + len(name))
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    return b"".join([struct.pack(f"<{count + 1}Q", count, *offsets), name, *parts])


def encode_json_binary(message: bytes, buffers: list[bytes]) -> bytes:
    """A binary frame of the default protocol: a message (JSON) with its buffers."""
    count = 1 + len(buffers)
    offsets = [4 * (count + 1)]
    for part in [message, *buffers][:-1]:
        offsets.append(offsets[-1] + len(part))
    return b"".join([struct.pack(f"!{count + 1}I", count, *offsets), message, *buffers])


def decode_json(frame: str | bytes) -> tuple[str, dict[str, Any]]:
    """``(channel, message)`` of a frame of the default (JSON) kernel WebSocket protocol."""
    buffers: list[bytes] = []
    try:
        if isinstance(frame, bytes):
            # a message with buffers: u32 BE count and offsets, the JSON, then the buffers
            if len(frame) < 4:
                raise BadFrame("binary frame too short")
            count = struct.unpack_from("!I", frame)[0]
            if count < 1 or 4 * (count + 1) > len(frame):
                raise BadFrame(f"binary frame with {count} parts")
            offsets = [*struct.unpack_from(f"!{count}I", frame, 4), len(frame)]
            if any(a > b for a, b in pairwise(offsets)):
                raise BadFrame("binary frame with bad offsets")
            msg = json.loads(frame[offsets[0] : offsets[1]])
            buffers = [frame[offsets[i] : offsets[i + 1]] for i in range(1, count)]
        else:
            msg = json.loads(frame)
    except ValueError as exc:
        raise BadFrame(f"undecodable frame: {exc}") from exc
    if not isinstance(msg, dict):
        raise BadFrame("a frame that is not an object")
    return str(msg.get("channel") or ""), as_message(
        msg.get("header"),
        msg.get("parent_header"),
        msg.get("metadata"),
        msg.get("content"),
        buffers,
    )
