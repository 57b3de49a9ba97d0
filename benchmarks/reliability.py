"""Reliability figures of prompt-ls, written to docs/RELIABILITY.md:
``python -m benchmarks.reliability [--fuzz-batches N] [--storm-s S] [--burst N]``.

- fuzz: generated traffic (benchmarks/protocol_fuzz.py) over raw stdio, then a status request
  that must be answered: messages sent, crashes (the process exited), hangs (no answer),
  popups (window/showMessage), tracebacks in responses;
- typing storm: a fast typist (one keystroke every 50 ms, each a didChange, a completion and
  a ghost-text request): p50/p99 latency of the answers;
- throughput: completion requests one after another on one line: requests per second;
- recovery: a completion sent right after a burst of expansions: how long it waits;
- peak RSS of the server process through all of the above;
- store faults: the regression tests of the store's defences, run with pytest.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from hypothesis import HealthCheck, given, settings

from benchmarks.protocol_fuzz import framed, traffic
from benchmarks.raw_lsp import REPO_ROOT, RawServer

REPORT = REPO_ROOT / "docs" / "RELIABILITY.md"
URI = "file:///storm/prompt.prompt"
HANG_S = 30.0  # no answer to a status request within this: the server is counted deaf
KEYSTROKE_S = 0.05  # 20 characters a second: a fast typist
TYPED = [  # written for this benchmark, not taken from any corpus
    "a portrait of an old fisherman, dramatic lighting, highly detailed",
    "castle on a hill at sunset, oil painting, warm colours",
    "cyberpunk street market in the rain, neon signs, wide angle",
]
STORE_FAULTS = {
    "bit rot with an unchanged mtime fails verify and load": "test_bit_rot_with_an_unchanged_mtime",
    "verify re-hashes what a load trusted": "test_verify_hashes_even_what_this_process",
    "manifest paths leaving the directory are refused": "test_manifest_paths_that_leave",
    "a link out of the directory is refused": "test_a_link_out_of_the_directory",
    "an empty or incomplete file list is refused": "test_an_empty_or_incomplete_file_list",
    "a read-only store: one line naming the path": "test_a_read_only_store_is_one_line",
    "a full disk: one line, no half manifest": "test_a_full_disk_is_one_line",
    "leftovers of killed writers are removed": "test_leftovers_of_killed_writers",
}
HUB_FAULTS = "tests/test_model_store_hub.py"


@dataclass
class Fuzz:
    batches: int = 0
    messages: int = 0
    crashes: int = 0
    hangs: int = 0
    popups: int = 0
    tracebacks: int = 0
    by_framing: dict[str, int] = field(default_factory=dict)


def fuzz(server: RawServer, batches: int) -> Fuzz:
    result = Fuzz()

    @settings(
        max_examples=batches,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(messages=traffic)
    def one_batch(messages: list[tuple[Any, str]]) -> None:
        if result.crashes or result.hangs:
            return  # a dead or deaf server: the count is what matters, not more batches
        result.batches += 1
        result.messages += len(messages)
        for _, framing in messages:
            result.by_framing[framing] = result.by_framing.get(framing, 0) + 1
        server.send(b"".join(framed(message, framing) for message, framing in messages))
        try:
            server.response_to(server.send_request("promptAutocomplete/status"), HANG_S)
        except AssertionError:
            if server.process.poll() is None:
                result.hangs += 1
            else:
                result.crashes += 1

    one_batch()
    result.popups = len(server.notifications("window/showMessage"))
    errors = [m["error"] for m in server.received if isinstance(m.get("error"), dict)]
    result.tracebacks = sum("Traceback" in str(e.get("message")) for e in errors)
    return result


def open_document(server: RawServer, text: str = "") -> int:
    item = {"uri": URI, "languageId": "prompt", "version": 1, "text": text}
    server.notify("textDocument/didClose", {"textDocument": {"uri": URI}})
    server.notify("textDocument/didOpen", {"textDocument": item})
    return 1


def position_params(text: str) -> dict[str, Any]:
    return {"textDocument": {"uri": URI}, "position": {"line": 0, "character": len(text)}}


def latencies_ms(server: RawServer, sent: dict[str, float]) -> list[float]:
    for msg_id in sent:
        server.response_to(msg_id)
    return sorted((server.answered_at[msg_id] - at) * 1000 for msg_id, at in sent.items())


def percentile(values: list[float], fraction: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


def storm(server: RawServer, seconds: float) -> dict[str, Any]:
    """Type the sample prompts character by character until ``seconds`` have passed."""
    version = open_document(server)
    completions: dict[str, float] = {}
    ghosts: dict[str, float] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for prompt in TYPED:
            for length in range(1, len(prompt) + 1):
                if time.monotonic() >= end:
                    break
                text = prompt[:length]
                version += 1
                change = {"textDocument": {"uri": URI, "version": version}}
                server.notify(
                    "textDocument/didChange", {**change, "contentChanges": [{"text": text}]}
                )
                now = time.monotonic()
                completions[
                    server.send_request("textDocument/completion", position_params(text))
                ] = now
                ghosts[
                    server.send_request(
                        "textDocument/inlineCompletion",
                        {**position_params(text), "context": {"triggerKind": 2}},
                    )
                ] = now
                time.sleep(KEYSTROKE_S)
    completion, ghost = latencies_ms(server, completions), latencies_ms(server, ghosts)
    return {
        "keystrokes": len(completions),
        "completion_p50": percentile(completion, 0.5),
        "completion_p99": percentile(completion, 0.99),
        "inline_p50": percentile(ghost, 0.5),
        "inline_p99": percentile(ghost, 0.99),
    }


def throughput(server: RawServer, seconds: float) -> float:
    """Completion requests per second, one at a time, each on a new text (no cache hits)."""
    version = open_document(server)
    texts = [prompt[:length] for prompt in TYPED for length in range(1, len(prompt) + 1)]
    done, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        text = texts[done % len(texts)] + " " * (done // len(texts))  # never the same twice
        version += 1
        change = {"textDocument": {"uri": URI, "version": version}}
        server.notify("textDocument/didChange", {**change, "contentChanges": [{"text": text}]})
        server.request("textDocument/completion", position_params(text))
        done += 1
    return done / (time.monotonic() - start)


def recovery(server: RawServer, expansions: int) -> dict[str, Any]:
    """A completion sent right after ``expansions`` expansion commands: its wait, in ms."""
    text = "castle on a hill, "
    open_document(server, text)
    command = {"command": "promptAutocomplete.expand", "arguments": [text, 4]}
    burst = [server.send_request("workspace/executeCommand", command) for _ in range(expansions)]
    sent = time.monotonic()
    answer = server.request("textDocument/completion", position_params(text))
    waited_ms = (server.answered_at[answer["id"]] - sent) * 1000
    answered = [server.response_to(msg_id) for msg_id in burst]
    return {
        "expansions": expansions,
        "completion_wait_ms": waited_ms,
        "expanded": sum(bool(a.get("result")) for a in answered),
    }


def store_faults() -> dict[str, bool]:
    """Each store defence's regression tests (one pytest run): all passed or not."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "junit.xml"
        selector = " or ".join([*STORE_FAULTS.values(), "hub"])
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-k",
                selector,
                f"--junitxml={report}",
                "tests/test_model_store.py",
                HUB_FAULTS,
            ],
            cwd=REPO_ROOT,
            capture_output=True,
        )
        cases = ElementTree.parse(report).getroot().iter("testcase")
        passed = {
            (case.get("classname", "") + "::" + case.get("name", "")): len(case) == 0
            for case in cases
        }
    outcomes = {}
    for fault, test in [*STORE_FAULTS.items(), ("hub downloads: 4 scenarios", "hub")]:
        ran = [ok for name, ok in passed.items() if test in name]
        outcomes[fault] = bool(ran) and all(ran)
    return outcomes


def commit() -> str:
    run = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    return run.stdout.strip() or "unknown"


def render(command: str, figures: dict[str, Any]) -> str:
    fuzz_result: Fuzz = figures["fuzz"]
    storm_result, rec = figures["storm"], figures["recovery"]
    framings = ", ".join(f"{k} {v}" for k, v in sorted(fuzz_result.by_framing.items()))
    faults = "\n".join(
        f"| {name} | {'held' if ok else '**FAILED**'} |" for name, ok in figures["store"].items()
    )
    return f"""# Reliability

Generated by `{command}` at {figures["commit"]} on {figures["date"]} (2 shared CPU cores);
the script is `benchmarks/reliability.py`. Regression tests of every defect below run in the
suite (`tests/test_server_protocol.py`, `tests/test_server_stdio.py`,
`tests/test_model_store.py`, `tests/test_model_store_hub.py`, `tests/test_repl_cli.py`).

## Protocol fuzz (raw stdio, one server)

| messages | batches | crashes | hangs | popups | tracebacks in answers |
|---:|---:|---:|---:|---:|---:|
| {fuzz_result.messages} | {fuzz_result.batches} | {fuzz_result.crashes} | {fuzz_result.hangs} \
| {fuzz_result.popups} | {fuzz_result.tracebacks} |

Framings sent: {framings}. After every batch a status request must be answered within
{HANG_S:g} s (else a hang).

## Load

| figure | value |
|---|---:|
| typing storm: keystrokes (one per {KEYSTROKE_S * 1000:g} ms, each a change, a completion \
and a ghost-text request) | {storm_result["keystrokes"]} |
| typing storm: completion p50 / p99 | {storm_result["completion_p50"]:.1f} / \
{storm_result["completion_p99"]:.1f} ms |
| typing storm: ghost text p50 / p99 | {storm_result["inline_p50"]:.1f} / \
{storm_result["inline_p99"]:.1f} ms |
| completion requests per second, one at a time, each on new text | \
{figures["throughput"]:.1f} |
| recovery: a completion sent after {rec["expansions"]} expansions waits | \
{rec["completion_wait_ms"]:.0f} ms |
| expansions of that burst answered with prompts (the rest dropped as superseded) | \
{rec["expanded"]} |
| server peak RSS through all of the above | {figures["rss_mb"]:.0f} MB |

The default model alone (no corpus statistics in the benchmark's fresh store). Latencies
include answers that came back empty because a newer keystroke made them stale.

## Store faults

| fault | defence |
|---|---|
{faults}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability")
    parser.add_argument("--fuzz-batches", type=int, default=800)
    parser.add_argument("--storm-s", type=float, default=20.0)
    parser.add_argument("--throughput-s", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    command = "python -m benchmarks.reliability " + " ".join(
        f"--{name.replace('_', '-')} {value:g}"
        for name, value in vars(args).items()
        if name != "out"
    )
    with tempfile.TemporaryDirectory() as home:
        server = RawServer(Path(home))
        try:
            server.initialize()
            server.wait_until_ready()
            figures: dict[str, Any] = {"fuzz": fuzz(server, args.fuzz_batches)}
            print(f"fuzz: {figures['fuzz']}", file=sys.stderr)
            figures["storm"] = storm(server, args.storm_s)
            figures["throughput"] = throughput(server, args.throughput_s)
            figures["recovery"] = recovery(server, args.burst)
            figures["rss_mb"] = server.peak_rss_mb()
        finally:
            server.close()
    figures["store"] = store_faults()
    figures["commit"] = commit()
    figures["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.out.write_text(render(command, figures), encoding="utf-8")
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
