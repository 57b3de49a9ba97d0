"""The request front end every engine shares: argument checks, settings, threads, the stop flag.

Each engine (the causal LM's, the study's word models') answers the same three requests with
the same contract, so the checks that define that contract live here once.
"""

from __future__ import annotations

import sys
import threading

from server.engine.filters import TermFilter
from server.engine.types import Cancelled, EngineSettings

MAX_EXPANSIONS = 32
DEFAULT_THREADS = 1


def check_stop(stop: threading.Event | None) -> None:
    """Raise Cancelled if the caller set the stop flag."""
    if stop is not None and stop.is_set():
        raise Cancelled


def check_cursor(text: str, cursor: int) -> int:
    """The cursor clamped to the text, as LSP clamps a position past a line's end.

    Raises TypeError for a non-str text or a non-int cursor and ValueError for a negative one.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if isinstance(cursor, bool) or not isinstance(cursor, int):
        raise TypeError(f"cursor must be an int, got {type(cursor).__name__}")
    if cursor < 0:
        raise ValueError(f"cursor must not be negative, got {cursor}")
    return min(cursor, len(text))


def check_limit(limit: int | None, default: int) -> int:
    """How many menu items a request may have: ``default`` when None, else a count >= 0."""
    limit = default if limit is None else limit
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
    return limit


def check_expand(text: str, n: int) -> None:
    """Raise TypeError or ValueError unless ``expand(text, n)`` is a valid request."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not isinstance(n, int) or not 0 <= n <= MAX_EXPANSIONS:
        raise ValueError(f"n must be an integer from 0 to {MAX_EXPANSIONS}, got {n!r}")


def check_settings(settings: EngineSettings, max_expansion_tokens: int) -> TermFilter:
    """Raise ValueError unless ``settings`` suit a model that writes at most
    ``max_expansion_tokens`` at once; return the term filter they ask for."""
    if settings.max_items < 1:
        raise ValueError(f"max_items must be at least 1, got {settings.max_items}")
    if not settings.temperature > 0:
        raise ValueError(f"temperature must be positive, got {settings.temperature}")
    if not 1 <= settings.max_expansion_tokens <= max_expansion_tokens:
        raise ValueError(
            f"max_expansion_tokens must be from 1 to {max_expansion_tokens} for this "
            f"model, got {settings.max_expansion_tokens}"
        )
    if not 0.0 <= settings.blend_weight <= 1.0:
        raise ValueError(f"blend_weight must be within [0, 1], got {settings.blend_weight}")
    if not 0.0 <= settings.personal_weight <= 1.0:
        raise ValueError(f"personal_weight must be within [0, 1], got {settings.personal_weight}")
    letters = settings.blend_lm_letters
    if letters is not None and (not isinstance(letters, int) or letters < 0):
        raise ValueError(f"blend_lm_letters must be None or a count >= 0, got {letters!r}")
    if settings.time_budget_ms <= 0:
        raise ValueError(f"time_budget_ms must be positive, got {settings.time_budget_ms}")
    return TermFilter(settings.blocklist, settings.safe_mode)


def set_threads(threads: int | None) -> None:
    """Set the process-wide thread count of numpy's BLAS, and torch's where an engine runs on
    torch (it has imported torch by then); one unless told otherwise.

    Each step of these small models is a chain of tiny matrix products that a second thread
    cannot speed up, and when another process holds the other core (an image generator, a
    training run) OpenMP's barriers made every request 20-30x slower in measurements.
    """
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    from threadpoolctl import threadpool_limits  # here: it inspects the loaded libraries

    count = threads or DEFAULT_THREADS
    threadpool_limits(count, user_api="blas")
    torch = sys.modules.get("torch")  # never imported here: the default model runs on numpy
    if torch is not None:
        torch.set_num_threads(count)
