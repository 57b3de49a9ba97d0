"""Generated LSP traffic for fuzzing prompt-ls: message shapes that went wrong before.

Bad frames (no header, lower-case header, LF line ends, a length of 0, one too short or too
long), bodies that are not UTF-8 or not JSON, envelopes with a null or numeric method, and
the server's own methods with well-shaped and ill-shaped params. Methods that legitimately
end the session or speak to the user (``shutdown``, ``exit``, ``initialize``, settings) are
left out: after any of these messages the server must still answer and must not have shown
the user a message.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

FRAMINGS = (
    "good",
    "lower-case header",
    "LF line ends",
    "no header",
    "length 0",
    "length one short",
    "body one short",
    "not UTF-8",
    "not JSON",
)
URIS = ["file:///fuzz/a.prompt", "file:///fuzz/b.txt", "untitled:c", "", "file:///fuzz/%zz"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
uris = st.sampled_from(URIS) | st.text(max_size=12)
texts = st.text(max_size=60) | st.sampled_from(["woman portrait, ", "a cat (red:1.2) <lo", ""])
positions = st.fixed_dictionaries({"line": st.integers(-2, 4), "character": st.integers(-2, 100)})
document = st.fixed_dictionaries({"uri": uris})
shaped_params: dict[str, st.SearchStrategy[Any]] = {
    "textDocument/didOpen": st.fixed_dictionaries(
        {
            "textDocument": st.fixed_dictionaries(
                {
                    "uri": uris,
                    "languageId": st.sampled_from(["prompt", "text", "python"]),
                    "version": st.integers(-1, 10),
                    "text": texts,
                }
            )
        }
    ),
    "textDocument/didChange": st.fixed_dictionaries(
        {
            "textDocument": st.fixed_dictionaries({"uri": uris, "version": st.integers(-1, 1000)}),
            "contentChanges": st.lists(
                st.fixed_dictionaries({"text": texts})
                | st.fixed_dictionaries(
                    {
                        "range": st.fixed_dictionaries({"start": positions, "end": positions}),
                        "text": texts,
                    }
                ),
                max_size=2,
            ),
        }
    ),
    "textDocument/didClose": st.fixed_dictionaries({"textDocument": document}),
    "textDocument/completion": st.fixed_dictionaries(
        {"textDocument": document, "position": positions}
    ),
    "textDocument/inlineCompletion": st.fixed_dictionaries(
        {
            "textDocument": document,
            "position": positions,
            "context": st.fixed_dictionaries({"triggerKind": st.integers(0, 3)}),
        }
    ),
    "workspace/executeCommand": st.fixed_dictionaries(
        {
            "command": st.sampled_from(["promptAutocomplete.expand", "other.command"]),
            "arguments": st.lists(texts | st.integers(-2, 20) | json_values, max_size=3),
        }
    ),
    "$/cancelRequest": st.fixed_dictionaries({"id": json_values}),
    "promptAutocomplete/status": st.none(),
    "unknown/method": json_values,
}
NOTIFICATIONS = {
    "textDocument/didOpen",
    "textDocument/didChange",
    "textDocument/didClose",
    "$/cancelRequest",
}


@st.composite
def envelopes(draw: st.DrawFn) -> Any:
    """One JSON-RPC message: mostly the server's methods, some broken envelopes."""
    method = draw(st.sampled_from(sorted(shaped_params)))
    params = draw(shaped_params[method] | json_values)
    message: dict[str, Any] = {"jsonrpc": draw(st.sampled_from(["2.0", "2.0", "2.0", "1.0"]))}
    message["method"] = draw(st.just(method) | st.sampled_from([None, 3, ""]))
    if method not in NOTIFICATIONS or draw(st.integers(0, 9)) == 0:
        message["id"] = draw(st.integers(1, 10**6) | st.text(max_size=6) | st.just([1]))
    if draw(st.integers(0, 9)):
        message["params"] = params
    return [message] if draw(st.integers(0, 19)) == 0 else message  # a batch: not in LSP


def framed(message: Any, framing: str) -> bytes:
    """``message`` as bytes on the wire, framed (or mis-framed) as ``framing`` says."""
    body = json.dumps(message).encode()
    if framing == "not UTF-8":
        body = b"\xff\xfe" + body
    elif framing == "not JSON":
        body = body[: len(body) // 2]
    length = len(body)
    header = b"Content-Length: %d\r\n\r\n"
    if framing == "lower-case header":
        header = b"content-length: %d\r\n\r\n"
    elif framing == "LF line ends":
        header = b"Content-Length: %d\n\n"
    elif framing == "no header":
        return body
    elif framing == "length 0":
        length = 0
    elif framing == "length one short":
        length -= 1
    elif framing == "body one short":
        length += 1
    return header % length + body


traffic = st.lists(st.tuples(envelopes(), st.sampled_from(FRAMINGS)), min_size=1, max_size=12)
