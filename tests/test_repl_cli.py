"""prompt-repl as other programs see it: exit codes, stdout lines, help text, --connect."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from client_tui.help import KEY_HELP
from tests.repl_support import (
    REPO_ROOT,
    SERVER_COMMAND,
    SETTINGS_ARGS,
    WAIT_S,
    server_command_args,
    server_env,
)


def run_repl(
    args: list[str], home: Path, stdin: str = "", timeout: float = WAIT_S + 60
) -> subprocess.CompletedProcess[str]:
    """prompt-repl as a subprocess (its own --timeout, 300 s, ends before ours)."""
    return subprocess.run(
        [sys.executable, "-m", "client_tui", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=server_env(home),
        timeout=timeout,
    )


def test_expand_prints_n_expansions_one_per_line(tmp_path: Path) -> None:
    result = run_repl(
        [*server_command_args(), *SETTINGS_ARGS, "--expand", "woman portrait", "-n", "4"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # As many as the server gives within its time budget, at most 4 (4 on an idle machine).
    assert 1 <= len(lines) <= 4
    assert all(line.strip() for line in lines)
    assert "Traceback" not in result.stderr


@pytest.fixture
def tcp_server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """prompt-ls --tcp on a free local port (one LSP session per server, as pygls serves)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = SERVER_COMMAND or [sys.executable, "-m", "server"]
    log = tmp_path / "prompt-ls.log"
    process = subprocess.Popen(
        [*command, "--tcp", f"127.0.0.1:{port}", "--log-level", "INFO", "--log-file", str(log)],
        cwd=REPO_ROOT,
        env=server_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Probing with a connection would use up the server's one session: read its log.
        deadline = time.monotonic() + WAIT_S
        while not (log.exists() and "Serving on" in log.read_text(encoding="utf-8")):
            assert process.poll() is None, "prompt-ls --tcp exited"
            assert time.monotonic() < deadline, "prompt-ls --tcp never listened"
            time.sleep(0.2)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_ideas_on_stdin_are_expanded_in_blank_line_separated_groups(
    tcp_server: tuple[str, int], tmp_path: Path
) -> None:
    host, port = tcp_server
    result = run_repl(
        ["--connect", f"{host}:{port}", *SETTINGS_ARGS, "-n", "2"],
        tmp_path,
        stdin="woman portrait\n\n   \ncastle on a hill\n",
    )
    assert result.returncode == 0, result.stderr
    groups = result.stdout.split("\n\n")
    assert len(groups) == 2  # blank input lines are skipped, not expanded
    for group in groups:
        lines = group.strip("\n").splitlines()
        assert 1 <= len(lines) <= 2 and all(line.strip() for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-n", "0"], "out of range"),
        (["-n", "17"], "out of range"),
        (["--connect", "localhost"], "HOST:PORT"),
        (["--temperature", "hot"], "not a number"),
        (["--no-such-option"], "unrecognized arguments"),
        (["--connect", "h:1", "--server-command", "x"], "not allowed with"),
    ],
)
def test_bad_options_exit_non_zero_with_a_message(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = run_repl([*args, "--expand", "x"], tmp_path, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_help_documents_every_key_binding(tmp_path: Path) -> None:
    result = run_repl(["--help"], tmp_path, timeout=60)
    assert result.returncode == 0
    for line in KEY_HELP.splitlines():
        assert line.strip() in result.stdout
    for option in (
        "--model",
        "--max-items",
        "--no-safe-mode",
        "--blocklist",
        "--expand",
        "--copy",
        "--connect",
    ):
        assert option in result.stdout


def test_a_server_that_cannot_start_fails_the_batch_with_its_reason(tmp_path: Path) -> None:
    dying = f"{sys.executable} -c 'import sys; sys.stderr.write(\"bad model\\n\"); sys.exit(3)'"
    result = run_repl(["--server-command", dying, "--expand", "x"], tmp_path, timeout=60)
    assert result.returncode == 1
    assert "exit code 3" in result.stderr and "bad model" in result.stderr
    assert result.stdout == ""


def test_the_history_file_lives_under_prompt_autocomplete_home(tmp_path: Path) -> None:
    result = run_repl(["--help"], tmp_path, timeout=60)
    assert str(tmp_path / "repl-history") in "".join(result.stdout.split())  # argparse wraps


def test_a_server_that_never_answers_times_out_with_a_message(tmp_path: Path) -> None:
    result = run_repl(
        ["--server-command", "sleep 1000", "--timeout", "1", "--expand", "cat"], tmp_path
    )
    assert result.returncode == 1
    assert "prompt-ls did not start within 1 s" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unbalanced_quote_in_the_server_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run_repl(["--server-command", "prompt-ls 'x", "--expand", "cat"], tmp_path)
    assert result.returncode == 2
    assert "No closing quotation" in result.stderr
    assert "Traceback" not in result.stderr


# A language server that expands its first idea, then dies on the second request.
DYING_SERVER = r"""
import json, sys
def read():
    lines = iter(lambda: sys.stdin.buffer.readline().strip(), b"")  # up to the blank line
    headers = dict(line.split(b": ", 1) for line in lines)
    return json.loads(sys.stdin.buffer.read(int(headers[b"Content-Length"])))
def send(message):
    body = json.dumps(message).encode()
    sys.stdout.buffer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    sys.stdout.buffer.flush()
expansions = 0
while True:
    message = read()
    if message.get("method") == "initialize":
        send({"jsonrpc": "2.0", "id": message["id"], "result": {"capabilities": {}}})
    elif message.get("method") == "workspace/executeCommand":
        expansions += 1
        if expansions == 2:
            sys.exit(3)
        send({"jsonrpc": "2.0", "id": message["id"], "result": ["one expansion"]})
"""


def test_a_server_killed_in_batch_mode_says_how_many_ideas_were_skipped(tmp_path: Path) -> None:
    script = tmp_path / "dying_server.py"
    script.write_text(DYING_SERVER, encoding="utf-8")
    result = run_repl(
        ["--server-command", f"{sys.executable} {script}", "-n", "1"],
        tmp_path,
        stdin="first\nsecond\nthird\nfourth\n",
    )
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["one expansion"]
    assert "3 ideas not expanded, from 'second' on" in result.stderr
    assert "Traceback" not in result.stderr
