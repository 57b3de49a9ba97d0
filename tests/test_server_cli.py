"""The prompt-ls command line: flags, stdout hygiene on stdio, and TCP serving."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from server import __version__
from server.cli import host_port
from tests.conftest import subprocess_env

PROCESS_WAIT_S = 120.0  # bounds a hung process on a busy machine; not a speed assertion


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def unframe(stream: bytes) -> list[dict[str, Any]]:
    """Split a byte stream into LSP messages; anything else in it fails the test."""
    messages = []
    while stream:
        header, separator, rest = stream.partition(b"\r\n\r\n")
        assert separator, f"not an LSP header: {stream[:80]!r}"
        fields = dict(line.split(b": ", 1) for line in header.split(b"\r\n"))
        length = int(fields[b"Content-Length"])
        messages.append(json.loads(rest[:length]))
        stream = rest[length:]
    return messages


SESSION = [
    {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}},
    {"jsonrpc": "2.0", "method": "initialized", "params": {}},
    {"jsonrpc": "2.0", "id": 2, "method": "shutdown"},
    {"jsonrpc": "2.0", "method": "exit"},
]


def env(tmp_path: Path) -> dict[str, str]:
    return subprocess_env(PROMPT_AUTOCOMPLETE_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1")


def test_version(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server", "--version"],
        capture_output=True,
        text=True,
        env=env(tmp_path),
        timeout=PROCESS_WAIT_S,
        check=True,
    )
    assert result.stdout.strip() == f"prompt-ls {__version__}"


def test_a_bad_tcp_address_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server", "--tcp", "localhost"],
        capture_output=True,
        text=True,
        env=env(tmp_path),
        timeout=PROCESS_WAIT_S,
    )
    assert result.returncode == 2
    assert "expected HOST:PORT" in result.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1:2087", ("127.0.0.1", 2087)), ("[::1]:9000", ("::1", 9000))],
)
def test_host_port(value: str, expected: tuple[str, int]) -> None:
    assert host_port(value) == expected


def test_stdio_carries_nothing_but_protocol(tmp_path: Path) -> None:
    """Even while the model loads in the background, stdout holds only LSP messages, and
    exit is prompt because the server does not wait for the load."""
    log_file = tmp_path / "server.log"
    result = subprocess.run(
        [sys.executable, "-m", "server", "--log-file", str(log_file), "--log-level", "info"],
        input=b"".join(frame(message) for message in SESSION),
        capture_output=True,
        env=env(tmp_path),
        timeout=PROCESS_WAIT_S,
    )
    messages = unframe(result.stdout)
    responses = {message["id"]: message for message in messages if "result" in message}
    assert responses[1]["result"]["serverInfo"]["name"] == "prompt-ls"
    assert responses[2]["result"] is None
    assert "stdin read on the event loop" in log_file.read_text()  # a pipe: server.stdio


def test_stdin_from_a_file_is_served_too(tmp_path: Path) -> None:
    """The event loop cannot watch a regular file, so a thread reads it."""
    session = tmp_path / "session.lsp"
    session.write_bytes(b"".join(frame(message) for message in SESSION))
    log_file = tmp_path / "server.log"
    with session.open("rb") as stdin:
        result = subprocess.run(
            [sys.executable, "-m", "server", "--log-file", str(log_file), "--log-level", "info"],
            stdin=stdin,
            capture_output=True,
            env=env(tmp_path),
            timeout=PROCESS_WAIT_S,
        )
    responses = {message.get("id"): message for message in unframe(result.stdout)}
    assert responses[1]["result"]["serverInfo"]["name"] == "prompt-ls"
    assert responses[2]["result"] is None
    log = log_file.read_text()
    assert "stdin read in a thread" in log and "event loop" not in log


def test_a_client_that_stops_reading_ends_the_server_without_tracebacks(tmp_path: Path) -> None:
    """An editor that crashed closes the server's stdout first: the server notices at its next
    message and exits, logging that once, though stdin is still open."""
    server = subprocess.Popen(
        [sys.executable, "-m", "server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(tmp_path),
    )
    assert server.stdin is not None and server.stdout is not None and server.stderr is not None
    server.stdin.write(frame(SESSION[0]))
    server.stdin.flush()
    server.stdout.read(len(b"Content-Length:"))  # initialize is being answered
    server.stdout.close()
    opened = {"uri": "file:///p.txt", "languageId": "plaintext", "version": 1, "text": "a cat"}
    server.stdin.write(frame(SESSION[1]))
    server.stdin.write(
        frame(
            {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": opened}}
        )
    )
    server.stdin.write(
        frame(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "textDocument/completion",
                "params": {
                    "textDocument": {"uri": opened["uri"]},
                    "position": {"line": 0, "character": 5},
                },
            }
        )
    )
    server.stdin.flush()
    try:
        code = server.wait(timeout=PROCESS_WAIT_S)
    finally:
        server.kill()
        server.stdin.close()
    log = server.stderr.read().decode()
    assert code == 0
    assert log.count("the client stopped reading") == 1, log
    assert "Traceback" not in log, log


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_tcp_resynchronises_after_a_bad_frame(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "--tcp", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(tmp_path),
    )
    try:
        connection = connect(port, server)
        with connection:
            bad = b"content-length: 3\n\n{x}"  # lower case, LF only, not JSON
            connection.sendall(bad + b"".join(frame(message) for message in SESSION))
            received = b""
            while chunk := connection.recv(65536):
                received += chunk
        responses = {message.get("id"): message for message in unframe(received)}
        assert responses[None]["error"]["code"] == -32700
        assert responses[1]["result"]["serverInfo"]["name"] == "prompt-ls"
        assert responses[2]["result"] is None
        server.wait(PROCESS_WAIT_S)
    finally:
        server.kill()
        server.communicate()


def connect(port: int, server: subprocess.Popen[bytes]) -> socket.socket:
    """Connect once the server listens (it imports torch first)."""
    deadline = time.monotonic() + PROCESS_WAIT_S
    while True:
        try:
            connection = socket.create_connection(("127.0.0.1", port), timeout=PROCESS_WAIT_S)
        except ConnectionRefusedError:
            assert server.poll() is None, "server exited before listening"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
            continue
        return connection
