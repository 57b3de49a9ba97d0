"""Key bindings of the REPL; client_tui.help.KEY_HELP documents them for --help."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prompt_toolkit.application import get_app
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.filters import Condition
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

from client_tui.suggest import ghost_shown, menu_item_selected
from prompt_words import ghost_word


def build_key_bindings(
    *,
    cycle: Callable[[Buffer, int], Awaitable[object]],
    expand: Callable[[Buffer], Awaitable[object]],
    open_menu: Callable[[Buffer], Awaitable[object]],
) -> KeyBindings:
    """Bindings layered over prompt-toolkit's emacs defaults.

    ``cycle(buffer, step)`` shows another alternative; ``expand(buffer)`` and
    ``open_menu(buffer)`` fetch expansions or completions and open them as a menu. They run as
    background tasks so the UI stays live while they wait.
    """
    bindings = KeyBindings()

    @Condition
    def ghost_available() -> bool:
        buffer = get_app().current_buffer
        return ghost_shown(buffer) and not menu_item_selected(buffer)

    @Condition
    def item_selected() -> bool:
        return menu_item_selected(get_app().current_buffer)

    @Condition
    def menu_open() -> bool:
        return get_app().current_buffer.complete_state is not None

    @bindings.add("tab", filter=ghost_available)
    def _accept_all(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        assert buffer.suggestion is not None
        buffer.insert_text(buffer.suggestion.text)

    @bindings.add("c-right", filter=ghost_available)
    def _accept_word(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        assert buffer.suggestion is not None
        buffer.insert_text(ghost_word(buffer.suggestion.text))

    @bindings.add("escape", "]")
    def _next_alternative(event: KeyPressEvent) -> None:
        event.app.create_background_task(cycle(event.current_buffer, 1))

    @bindings.add("escape", "[")
    def _previous_alternative(event: KeyPressEvent) -> None:
        event.app.create_background_task(cycle(event.current_buffer, -1))

    @bindings.add("c-space")
    def _open_menu(event: KeyPressEvent) -> None:
        event.app.create_background_task(open_menu(event.current_buffer))

    @bindings.add("f2")
    @bindings.add("escape", "x")
    def _expand(event: KeyPressEvent) -> None:
        event.app.create_background_task(expand(event.current_buffer))

    @bindings.add("escape", filter=menu_open)
    def _close_menu(event: KeyPressEvent) -> None:
        event.current_buffer.cancel_completion()

    @bindings.add("enter", filter=item_selected)
    def _keep_item(event: KeyPressEvent) -> None:
        event.current_buffer.complete_state = None

    @bindings.add("c-d")
    def _quit(event: KeyPressEvent) -> None:
        event.app.exit(exception=EOFError)

    return bindings
