"""A prompt-ls process driven over raw stdio bytes, for tests and the reliability benchmark:
they send what no client library would (bad frames, bad JSON, bad envelopes) and then check
that the server still answers."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
ANSWER_WAIT_S = 120.0  # bounds a deaf server on a busy 2-core machine; not a speed assertion


def frame(message: Any) -> bytes:
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def server_env(home: Path) -> dict[str, str]:
    """This environment with the repository importable, a private store and no hub."""
    env = dict(os.environ, PROMPT_AUTOCOMPLETE_HOME=str(home), HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


class RawServer:
    """One ``python -m server`` process; every message it writes is collected by a thread."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.stderr_path = home / "stderr.log"
        home.mkdir(parents=True, exist_ok=True)
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=REPO_ROOT,
            env=server_env(home),
        )
        self.received: list[dict[str, Any]] = []
        self.answered_at: dict[Any, float] = {}  # response id -> when it arrived (monotonic)
        self._arrivals: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._next_id = 0

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        while True:
            header = b""
            while not header.endswith(b"\r\n\r\n"):
                byte = stdout.read(1)
                if not byte:
                    return
                header += byte
            length = int(header.split(b":", 1)[1].split(b"\r\n", 1)[0])
            message = json.loads(stdout.read(length))
            if "id" in message and "method" not in message:
                self.answered_at[message["id"]] = time.monotonic()
            self.received.append(message)
            self._arrivals.put(message)

    def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def notify(self, method: str, params: Any = None) -> None:
        self.send(frame({"jsonrpc": "2.0", "method": method, "params": params}))

    def new_id(self) -> str:
        self._next_id += 1
        return f"test-{self._next_id}"

    def send_request(self, method: str, params: Any = None, prefix: bytes = b"") -> str:
        """Send ``prefix`` (any bytes) then a request, without waiting; the request's id."""
        msg_id = self.new_id()
        message = {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}
        self.send(prefix + frame(message))
        return msg_id

    def request(self, method: str, params: Any = None, prefix: bytes = b"") -> dict[str, Any]:
        """Send ``prefix`` (any bytes) then a request; its response (result or error)."""
        return self.response_to(self.send_request(method, params, prefix))

    def response_to(self, msg_id: Any, wait_s: float = ANSWER_WAIT_S) -> dict[str, Any]:
        deadline = time.monotonic() + wait_s
        for message in self.received:
            if message.get("id") == msg_id and "method" not in message:
                return message
        while time.monotonic() < deadline:
            try:
                message = self._arrivals.get(timeout=0.5)
            except queue.Empty:
                assert self.process.poll() is None, f"prompt-ls exited: {self.stderr()[-2000:]}"
                continue
            if message.get("id") == msg_id and "method" not in message:
                return message
        raise AssertionError(f"no answer to {msg_id} in {wait_s} s: the server is deaf")

    def initialize(self, options: Any = None) -> dict[str, Any]:
        params = {"capabilities": {}, "initializationOptions": options}
        answer = self.request("initialize", params)
        self.notify("initialized", {})
        return answer

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + ANSWER_WAIT_S
        while (state := self.request("promptAutocomplete/status")["result"]["state"]) != "ready":
            assert state != "failed" and time.monotonic() < deadline, self.stderr()[-2000:]
            time.sleep(0.1)

    def notifications(self, method: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("method") == method]

    def peak_rss_mb(self) -> float:
        """The server process's peak resident memory so far (Linux ``VmHWM``)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text(encoding="utf-8")
        kilobytes = next(
            line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")
        )
        return int(kilobytes) / 1024

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> int:
        """End the process (politely if it still listens); its exit code."""
        if self.process.poll() is None:
            try:
                self.send(frame({"jsonrpc": "2.0", "method": "exit"}))
                self.process.stdin.close()  # type: ignore[union-attr]
            except BrokenPipeError:
                pass
        try:
            code = self.process.wait(timeout=ANSWER_WAIT_S)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._stderr.close()
        return code
