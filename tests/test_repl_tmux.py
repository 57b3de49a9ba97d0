"""prompt-repl in a real terminal (tmux): type, see ghost text, accept it, print the prompt."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.repl_support import (
    REPO_ROOT,
    SETTINGS_ARGS,
    WAIT_S,
    server_command_args,
    server_env,
)

IDEA = "woman portrait"
PROMPT = "prompt> "


@pytest.fixture(scope="module", autouse=True)
def tmux_installed() -> None:
    """The REPL in a real terminal: without tmux this test fails, it never skips."""
    if shutil.which("tmux") is None:
        pytest.fail("tmux is missing: apt-get install tmux (.ci/run installs it)")


class Tmux:
    """One detached tmux session running a command in a fixed-size terminal.

    Each runs on a tmux server of its own (``-L``): a session added to a running server gets
    that server's environment, not ours, so a test running beside another (pytest-xdist, or
    another checkout's suite) would start the REPL with the other's store and paths.
    """

    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.name = f"prompt-repl-test-{uuid.uuid4().hex[:8]}"
        self.tmux = ["tmux", "-L", self.name]
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-s", self.name, "-x", "110", "-y", "16", command],
            check=True,
            env=env,
        )

    def send(self, *keys: str, literal: bool = False) -> None:
        flags = ["-l"] if literal else []
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, *flags, *keys], check=True)

    def type(self, text: str) -> None:
        for char in text:
            self.send(char, literal=True)
            time.sleep(0.02)

    def screen(self) -> str:
        return subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-t", self.name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def wait_for(self, condition: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + WAIT_S
        while True:
            screen = self.screen()
            if condition(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; screen:\n{screen}")
            time.sleep(0.1)

    def kill(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], check=False)


def prompt_line(screen: str) -> str:
    lines = [line for line in screen.splitlines() if line.startswith(PROMPT)]
    return lines[-1][len(PROMPT) :].rstrip() if lines else ""


def shows_ghost(screen: str) -> bool:
    line = prompt_line(screen)
    return line.startswith(IDEA) and len(line) > len(IDEA)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[tuple[Tmux, Path]]:
    out = tmp_path / "printed.txt"
    env = server_env(tmp_path / "home")  # an empty store: the child server uses the default model
    command = " ".join(
        shlex.quote(part)
        for part in [sys.executable, "-m", "client_tui", *server_command_args(), *SETTINGS_ARGS]
    )
    # stdout goes to a file, so the interface is drawn on stderr: only prompts reach the file.
    session = Tmux(f"cd {shlex.quote(str(REPO_ROOT))} && {command} > {shlex.quote(str(out))}", env)
    try:
        yield session, out
    finally:
        session.kill()


def test_ghost_text_accepted_with_tab_is_printed_on_enter(terminal: tuple[Tmux, Path]) -> None:
    tmux, out = terminal
    tmux.wait_for(lambda screen: "ready" in screen, "the model to load")
    tmux.type(IDEA)
    screen = tmux.wait_for(shows_ghost, "ghost text after the typed idea")
    shown = prompt_line(screen)
    tmux.send("Tab")  # the terminal delivers keys in order: Tab is handled before Enter
    tmux.send("Enter")
    deadline = time.monotonic() + WAIT_S
    while not out.read_text(encoding="utf-8").strip() and time.monotonic() < deadline:
        time.sleep(0.1)
    printed = out.read_text(encoding="utf-8").splitlines()
    assert len(printed) == 1
    assert printed[0].startswith(IDEA) and len(printed[0]) > len(IDEA)
    assert shown.startswith(printed[0].rstrip()) or printed[0].startswith(shown)
    tmux.send("C-d")
