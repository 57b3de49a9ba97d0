"""prompt-repl: interactive prompt completion in the terminal, or batch expansion in a pipe."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from client_tui import __version__
from client_tui.help import BATCH_HELP, KEY_HELP
from client_tui.paths import default_history_path

if TYPE_CHECKING:  # the protocol types take seconds to import: not for --help or usage errors
    from client_tui.lsp import PromptServerClient

MAX_EXPANSIONS = 16  # the most prompt-ls gives for one expand command


def _int_from(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{value} is out of range: expected {bounds}")
        return value

    return parse


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must not be negative")
    return value


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:2087)")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prompt-repl",
        description=(
            "Write text-to-image prompts with offline autocompletion from prompt-ls. "
            "Each finished prompt (Enter) is printed on stdout, and only that, so the REPL "
            "composes with other tools; the interface itself is drawn on the terminal."
        ),
        epilog=f"{KEY_HELP}\n\n{BATCH_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = parser.add_argument_group("model settings (sent to the server)")
    model.add_argument(
        "--model",
        metavar="REF",
        help="model to load: 'default', a directory, hf:<repo>[@rev], a stored "
        "name or a preset (server default when omitted)",
    )
    model.add_argument(
        "--max-items",
        type=_int_from(1),
        metavar="N",
        help="most completion-menu items the server returns",
    )
    model.add_argument(
        "--temperature",
        type=_non_negative_float,
        metavar="T",
        help="sampling temperature for expansions",
    )
    model.add_argument(
        "--max-expansion-tokens",
        type=_int_from(1),
        metavar="N",
        help="longest expansion, in tokens",
    )
    model.add_argument(
        "--time-budget-ms",
        type=_int_from(10),
        metavar="MS",
        help="how long the server may work on one suggestion before answering with what it has",
    )
    model.add_argument(
        "--blocklist",
        action="append",
        default=[],
        metavar="WORDS",
        help="comma-separated words (or /regex/) never to suggest; repeatable",
    )
    model.add_argument(
        "--no-safe-mode",
        dest="safe_mode",
        action="store_false",
        help="turn off the server's safe mode (on by default)",
    )
    for flag, what in (
        ("--lora-dir", "LoRA files, offered after <lora:"),
        ("--embedding-dir", "textual-inversion embeddings, offered as words"),
        ("--wildcard-dir", "wildcard .txt files, offered as __name__"),
    ):
        model.add_argument(
            flag, action="append", default=[], metavar="DIR", help=f"a folder of {what}; repeatable"
        )
    model.add_argument(
        "--no-tags", dest="tags", action="store_false", help="no Danbooru tags in the menu"
    )
    model.add_argument(
        "--token-limit",
        type=_int_from(0),
        metavar="N",
        help="CLIP tokens shown against in the toolbar (default 75; 0: whole 75-token chunks)",
    )

    server = parser.add_argument_group("server")
    where = server.add_mutually_exclusive_group()
    where.add_argument(
        "--connect",
        type=_host_port,
        metavar="HOST:PORT",
        help="use a running prompt-ls --tcp server instead of starting one",
    )
    where.add_argument(
        "--server-command",
        metavar="CMD",
        help="command that starts prompt-ls on stdio (default: the installed prompt-ls)",
    )
    server.add_argument(
        "--timeout",
        type=_non_negative_float,
        default=300.0,
        metavar="SECONDS",
        help="batch mode: how long to wait for the model to load (default 300)",
    )
    server.add_argument(
        "--log-file", type=Path, metavar="PATH", help="write the client's protocol log here"
    )

    repl = parser.add_argument_group("output")
    repl.add_argument(
        "--expand", metavar="TEXT", help="print expansions of TEXT, one per line, and exit"
    )
    repl.add_argument(
        "-n",
        "--count",
        type=_int_from(1, MAX_EXPANSIONS),
        default=4,
        metavar="N",
        help="number of expansions, 1 to "
        f"{MAX_EXPANSIONS} (batch mode and the expand key; default 4)",
    )
    repl.add_argument(
        "--copy",
        action="store_true",
        help="also put each finished prompt on the clipboard through the "
        "terminal (OSC 52; tmux needs set-clipboard on)",
    )
    repl.add_argument(
        "--history",
        type=Path,
        metavar="FILE",
        help=f"history file (default {default_history_path()}, under "
        "$PROMPT_AUTOCOMPLETE_HOME when set)",
    )
    repl.add_argument(
        "--no-history", action="store_true", help="keep history only for this session"
    )
    repl.add_argument(
        "--no-learn",
        action="store_true",
        help="do not teach the server's personal statistics the prompts finished here",
    )
    parser.add_argument("--version", action="version", version=f"prompt-repl {__version__}")
    return parser


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """initializationOptions for the server: only what the user set, plus safeMode."""
    settings: dict[str, Any] = {"safeMode": args.safe_mode}
    if args.model is not None:
        settings["model"] = args.model
    if args.max_items is not None:
        settings["maxItems"] = args.max_items
    if args.temperature is not None:
        settings["temperature"] = args.temperature
    if args.max_expansion_tokens is not None:
        settings["maxExpansionTokens"] = args.max_expansion_tokens
    if args.time_budget_ms is not None:
        settings["timeBudgetMs"] = args.time_budget_ms
    words = [w.strip() for entry in args.blocklist for w in entry.split(",") if w.strip()]
    if words:
        settings["blocklist"] = words
    folders = {"loraDirs": args.lora_dir, "embeddingDirs": args.embedding_dir}
    folders["wildcardDirs"] = args.wildcard_dir
    settings.update({key: value for key, value in folders.items() if value})
    if not args.tags:
        settings["tagPacks"] = []
    if args.token_limit is not None:
        settings["tokenLimit"] = args.token_limit
    return settings


def server_command(text: str) -> list[str]:
    """``--server-command`` split as a shell would; a usage error (exit 2) if it cannot be."""
    try:
        command = shlex.split(text)
    except ValueError as error:  # an unbalanced quote
        build_parser().error(f"--server-command {text!r}: {error}")
    if not command:
        build_parser().error("--server-command is empty")
    return command


def make_client(args: argparse.Namespace) -> PromptServerClient:
    from client_tui.lsp import PromptServerClient

    settings = settings_from_args(args)
    if args.connect is not None:
        return PromptServerClient(settings, address=args.connect)
    if args.server_command is not None:
        return PromptServerClient(settings, command=server_command(args.server_command))
    return PromptServerClient(settings)


async def run_batch(
    client: PromptServerClient, ideas: Iterable[str], count: int, timeout: float, out: TextIO
) -> int:
    """Expand each idea; groups of expansions are separated by a blank line."""
    from client_tui.lsp import LspError

    answered = False  # a server that never answered is not asked to shut down politely
    try:
        try:
            await asyncio.wait_for(client.start(), timeout)
            answered = True
            await client.wait_until_ready(timeout)
        except TimeoutError as error:
            what = "start" if not answered else "load its model"
            raise TimeoutError(
                f"prompt-ls did not {what} within {timeout:g} s ({str(error) or 'no answer'}); "
                "check --server-command, or raise --timeout"
            ) from None
        status = 0
        remaining = iter(ideas)
        for number, idea in enumerate(remaining):
            try:
                expansions = await _expand_when_loaded(client, idea, count, timeout)
            except LspError as error:
                skipped = 1 + sum(1 for _ in remaining)
                print(
                    f"prompt-repl: {error}; {skipped} idea{'s' if skipped > 1 else ''} not "
                    f"expanded, from {idea!r} on",
                    file=sys.stderr,
                )
                return 1
            if not expansions:
                reason = f" ({client.notice})" if client.notice else ""
                print(f"prompt-repl: no expansion for {idea!r}{reason}", file=sys.stderr)
                status = 1
            if number:
                print(file=out)
            for expansion in expansions:
                print(" ".join(expansion.split()), file=out)
            out.flush()
        return status
    except (LspError, TimeoutError) as error:
        print(f"prompt-repl: {str(error) or 'timed out waiting for prompt-ls'}", file=sys.stderr)
        return 1
    finally:
        await client.stop(polite=answered)


async def _expand_when_loaded(
    client: PromptServerClient, idea: str, count: int, timeout: float
) -> list[str]:
    """Expand, asking again once the model serves if the server was loading it (again,
    after a restart): a loading server answers empty, a serving one's empty answer is final."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        expansions = await client.expand(idea, count)
        if expansions or loop.time() > deadline or client.model_settled:
            return expansions
        await client.wait_until_ready(max(0.0, deadline - loop.time()))


def _ideas(lines: Iterable[str]) -> Iterable[str]:
    return (line.strip() for line in lines if line.strip())


def _terminal_output() -> Any:
    """Where the interface is drawn: stdout if it is the terminal, else stderr, else /dev/tty."""
    from prompt_toolkit.output import create_output

    for stream in (sys.stdout, sys.stderr):
        if stream is not None and stream.isatty():
            return create_output(stdout=stream)
    return create_output(stdout=open("/dev/tty", "w"))  # open as long as the app runs


def _configure_logging(log_file: Path | None) -> None:
    root = logging.getLogger()
    if log_file is None:
        # Without a handler Python prints warnings on stderr, i.e. across the interface.
        root.addHandler(logging.NullHandler())
        return
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_file)
    client = make_client(args)
    if args.expand is not None:
        return asyncio.run(run_batch(client, [args.expand], args.count, args.timeout, sys.stdout))
    if not sys.stdin.isatty():
        return asyncio.run(
            run_batch(client, _ideas(sys.stdin), args.count, args.timeout, sys.stdout)
        )
    from client_tui.app import Repl, ReplOptions

    history = None if args.no_history else (args.history or default_history_path())
    options = ReplOptions(
        expansions=args.count,
        copy=args.copy,
        history_file=history,
        erase_when_done=sys.stdout.isatty(),
        learn=not args.no_learn,
    )
    repl = Repl(client, options, output=_terminal_output())
    asyncio.run(repl.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
