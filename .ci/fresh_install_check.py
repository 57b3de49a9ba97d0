"""Run by .ci/run with the python of a fresh venv that installed only the built wheel.

It starts that venv's ``prompt-ls`` with an empty model store and no corpus, types a prompt
and checks that completions come first from the statistics pack and then from the blend of
the pack with the default model: both are package data, nothing else is there to use.
Plain JSON-RPC over pipes, so the check needs nothing the wheel does not bring.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TIMEOUT_S = 120.0
URI = "file:///fresh.prompt"
TEXT = "portrait of a woman, highly det"


class Server:
    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self.next_id = 0

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        length = 0
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise SystemExit("fresh install: prompt-ls exited")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("ascii").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        message: dict[str, Any] = json.loads(self.process.stdout.read(length))
        return message

    def request(self, method: str, params: Any) -> Any:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        while True:
            message = self.receive()
            if message.get("id") == self.next_id and "method" not in message:
                if "error" in message:
                    raise SystemExit(f"fresh install: {method} failed: {message['error']}")
                return message.get("result")
            if "method" in message and "id" in message:  # a request from the server
                self.send({"id": message["id"], "result": None})


def labels(result: Any) -> list[str]:
    items = result.get("items", []) if isinstance(result, dict) else result or []
    return [item["label"] for item in items]


def main() -> int:
    bin_dir = Path(sys.executable).parent
    store = tempfile.mkdtemp(prefix="fresh-store-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPT_AUTOCOMPLETE")}
    env["PROMPT_AUTOCOMPLETE_HOME"] = store
    server = Server([str(bin_dir / "prompt-ls")], env)
    server.request("initialize", {"processId": os.getpid(), "rootUri": None, "capabilities": {}})
    server.send({"method": "initialized", "params": {}})
    document = {"uri": URI, "languageId": "prompt", "version": 1, "text": TEXT}
    server.send({"method": "textDocument/didOpen", "params": {"textDocument": document}})
    position = {"textDocument": {"uri": URI}, "position": {"line": 0, "character": len(TEXT)}}
    deadline = time.monotonic() + TIMEOUT_S
    seen_states = []
    while time.monotonic() < deadline:
        status = server.request("promptAutocomplete/status", None)
        found = labels(server.request("textDocument/completion", position))
        seen_states.append((status["state"], status.get("statistics"), bool(found)))
        if status["state"] == "ready" and found:
            break
        time.sleep(0.05)
    else:
        raise SystemExit(f"fresh install: no blended completions in {TIMEOUT_S} s: {seen_states}")
    server.request("shutdown", None)
    server.send({"method": "exit"})
    server.process.wait(timeout=30)
    if status.get("statistics") != "pack":
        raise SystemExit(f"fresh install: served with statistics {status.get('statistics')!r}")
    if not any(label.startswith("detailed") for label in found):
        raise SystemExit(f"fresh install: odd completions for {TEXT!r}: {found}")
    states = [state for state, _, answered in seen_states if answered]
    print(f"fresh install: {found[:3]} (answered while {sorted(set(states))}); store {store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
