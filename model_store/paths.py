"""Where the store keeps models and caches (platformdirs, overridable by environment)."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "prompt-autocompletion"
STORE_ENV = "PROMPT_AUTOCOMPLETE_HOME"
CACHE_ENV = "PROMPT_AUTOCOMPLETE_CACHE"


def store_dir() -> Path:
    """Root of the model store: $PROMPT_AUTOCOMPLETE_HOME or the user data directory."""
    override = os.environ.get(STORE_ENV)
    if override:
        return Path(override).expanduser()
    # imported only here: a GPU machine that sets the variable need not carry platformdirs
    import platformdirs

    return platformdirs.user_data_path(APP_NAME)


def cache_dir() -> Path:
    """Derived, re-creatable data (cleaned corpora, token arrays, digest cache)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    if os.environ.get(STORE_ENV):
        return store_dir() / "cache"
    import platformdirs

    return platformdirs.user_cache_path(APP_NAME)
