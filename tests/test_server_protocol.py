"""prompt-ls over raw stdio: bad frames, bad JSON and bad envelopes never deafen it, requests
always get an answer without a traceback, and nothing pops up at the user (issue 19)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from benchmarks.protocol_fuzz import framed, traffic
from benchmarks.raw_lsp import RawServer, frame

FUZZ_EXAMPLES = 60  # x up to 12 messages each: several hundred messages per run


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RawServer]:
    """One ready server shared by the module: starting one costs seconds."""
    started = RawServer(tmp_path_factory.mktemp("home"))
    started.initialize()
    started.wait_until_ready()
    yield started
    started.close()


def assert_listening_after(server: RawServer, prefix: bytes = b"") -> None:
    """``prefix`` (any bytes), then a status request that must be answered."""
    answer = server.request("promptAutocomplete/status", prefix=prefix)
    assert answer["result"]["state"] == "ready", answer


BODY = b'{"jsonrpc":"2.0","method":"initialized","params":{}}'


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(BODY, id="body without a header"),
        pytest.param(b"Content-Length: 0\r\n\r\n" + BODY, id="length 0"),
        pytest.param(b"Content-Length: %d\r\n\r\n" % (len(BODY) - 1) + BODY, id="length short"),
        pytest.param(b"Content-Length: %d\r\n\r\n" % (len(BODY) + 1) + BODY, id="body short"),
        pytest.param(b"content-length: %d\r\n\r\n" % len(BODY) + BODY, id="lower-case"),
        pytest.param(b"Content-Length: %d\n\n" % len(BODY) + BODY, id="LF only"),
        pytest.param(b"Content-Length: 99999999999\r\n\r\n", id="over the maximum"),
    ],
)
def test_a_bad_frame_never_deafens_the_server(server: RawServer, bad: bytes) -> None:
    assert_listening_after(server, bad)


@pytest.mark.parametrize(
    "body", [b"\xff\xfe{}", b'{"jsonrpc": "2.0", "id": 1', b""], ids=["not UTF-8", "cut", "empty"]
)
def test_a_body_that_is_not_utf8_json_gets_a_parse_error(server: RawServer, body: bytes) -> None:
    before = len(parse_errors(server))
    assert_listening_after(server, frame(body))
    assert len(parse_errors(server)) == before + 1


def parse_errors(server: RawServer) -> list[dict]:
    return [m for m in server.received if m.get("error", {}).get("code") == -32700]


def test_a_null_method_is_an_invalid_request(server: RawServer) -> None:
    msg_id = server.new_id()
    server.send(frame({"jsonrpc": "2.0", "id": msg_id, "method": None}))
    answer = server.response_to(msg_id)
    assert answer["error"]["code"] == -32600


def test_a_custom_request_without_params_is_answered(server: RawServer) -> None:
    msg_id = server.new_id()
    server.send(frame({"jsonrpc": "2.0", "id": msg_id, "method": "promptAutocomplete/status"}))
    assert server.response_to(msg_id)["result"]["state"] == "ready"


def test_a_bad_notification_is_logged_not_shown(server: RawServer) -> None:
    server.notify("textDocument/didChange", {"textDocument": 3})
    server.notify("textDocument/didOpen", {"textDocument": {"uri": "file:///x"}})
    assert_listening_after(server)
    assert server.notifications("window/showMessage") == []


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(messages=traffic)
def test_fuzzed_traffic_never_deafens_crashes_or_pops_up(
    server: RawServer, messages: list[tuple[object, str]]
) -> None:
    server.send(b"".join(framed(message, framing) for message, framing in messages))
    assert_listening_after(server)
    assert server.notifications("window/showMessage") == []
    errors = [m["error"] for m in server.received if "error" in m]
    assert not [e for e in errors if "Traceback" in e.get("message", "")]


def test_requests_after_shutdown_are_refused_and_exit_succeeds(tmp_path: Path) -> None:
    server = RawServer(tmp_path)
    server.request("initialize", {"capabilities": {}})
    assert server.request("shutdown")["result"] is None
    assert server.request("promptAutocomplete/status")["error"]["code"] == -32600
    assert server.close() == 0


def test_exit_without_shutdown_exits_with_1(tmp_path: Path) -> None:
    server = RawServer(tmp_path)
    server.request("initialize", {"capabilities": {}})
    assert server.close() == 1
