"""The stdio transport (server/stdio.py): frames, resynchronisation and envelope errors."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from server.stdio import MAX_CONTENT_LENGTH, FrameReader, envelope_problem, pollable


def frame(body: bytes, header: bytes = b"Content-Length: %d\r\n\r\n") -> bytes:
    return (header % len(body) if b"%d" in header else header) + body


def frames_of(*chunks: bytes) -> FrameReader:
    """A reader fed ``chunks`` one read at a time, then the end of input."""
    pending = list(chunks)

    async def read() -> bytes:
        return pending.pop(0) if pending else b""

    return FrameReader(read)


async def bodies(reader: FrameReader) -> list[bytes]:
    found = []
    while (body := await reader.next_body()) is not None:
        found.append(body)
    return found


GOOD = b'{"jsonrpc":"2.0","id":1,"method":"x"}'


async def test_well_formed_frames_come_out_whole_even_split_across_reads() -> None:
    stream = frame(GOOD) + frame(b"{}")
    split = [stream[i : i + 7] for i in range(0, len(stream), 7)]
    assert await bodies(frames_of(*split)) == [GOOD, b"{}"]


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        pytest.param(GOOD, [], id="body without a header"),
        pytest.param(frame(b"", b"Content-Length: 0\r\n\r\n") + GOOD, [b""], id="length 0"),
        pytest.param(frame(GOOD, b"Content-Length: 37\r\n\r\n"), [GOOD[:37]], id="length short"),
        pytest.param(frame(GOOD, b"Content-Length: 39\r\n\r\n"), [GOOD], id="body short"),
        pytest.param(frame(GOOD, b"Content-Length: 999\r\n\r\n"), [GOOD], id="length long"),
        pytest.param(frame(GOOD, b"content-length: %d\r\n\r\n"), [GOOD], id="lower-case header"),
        pytest.param(frame(GOOD, b"Content-Length: %d\n\n"), [GOOD], id="LF line ends"),
        pytest.param(
            frame(GOOD, b"Content-Length: %d\r\nContent-Type: application/json\r\n\r\n"),
            [GOOD],
            id="a second header",
        ),
        pytest.param(b"Content-Length: 12\r\n" + GOOD, [], id="no blank line"),
        pytest.param(b"garbage\r\n\r\n\x00\xff" * 50, [], id="binary noise"),
    ],
)
async def test_after_a_bad_frame_the_next_good_one_is_read(
    bad: bytes, expected: list[bytes]
) -> None:
    reader = frames_of(bad + frame(b'{"next":1}'))
    found = await bodies(reader)
    assert found == [*expected, b'{"next":1}']


async def test_a_length_over_the_maximum_is_refused_not_buffered() -> None:
    huge = b"Content-Length: %d\r\n\r\n" % (MAX_CONTENT_LENGTH + 1)
    reader = frames_of(huge + b"x" * 1000 + frame(b'{"next":1}'))
    assert await bodies(reader) == [b'{"next":1}']
    assert reader.skipped_bytes >= 1000


async def test_garbage_without_any_header_is_not_kept_in_memory() -> None:
    chunks = [b"x" * 65536] * 50  # 3 MB of noise, read in chunks
    reader = frames_of(*chunks, frame(b"{}"))
    assert await bodies(reader) == [b"{}"]
    assert len(reader._buffer) == 0


async def test_a_body_cut_short_by_the_end_of_input_ends_the_session() -> None:
    assert await bodies(frames_of(b"Content-Length: 100\r\n\r\n" + GOOD)) == []


@pytest.mark.parametrize(
    "message",
    [
        [1, 2],
        "text",
        {"id": 1, "method": "x"},
        {"jsonrpc": "2.0", "id": 1, "method": None},
        {"jsonrpc": "2.0", "id": 1, "method": 3},
        {"jsonrpc": "2.0", "id": [1], "method": "x"},
        {"jsonrpc": "2.0", "id": 1, "method": "x", "params": 3},
        {"jsonrpc": "2.0", "id": 1},
    ],
)
def test_envelopes_that_are_not_json_rpc_are_named(message: Any) -> None:
    assert envelope_problem(message)


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "id": 1, "method": "x"},
        {"jsonrpc": "2.0", "method": "x", "params": {}},
        {"jsonrpc": "2.0", "id": "a", "result": None},
        {"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": "m"}},
    ],
)
def test_json_rpc_envelopes_pass(message: Any) -> None:
    assert envelope_problem(json.loads(json.dumps(message))) is None


def test_pipes_are_pollable_files_and_memory_are_not(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as pipe, os.fdopen(write_end, "wb"):
        assert pollable(pipe)
    (tmp_path / "input").write_bytes(b"")
    with (tmp_path / "input").open("rb") as regular:
        assert not pollable(regular)
    assert not pollable(io.BytesIO(b""))
