"""Where the REPL keeps its files: the user data directory, or $PROMPT_AUTOCOMPLETE_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "prompt-autocompletion"
HOME_ENV = "PROMPT_AUTOCOMPLETE_HOME"


def data_dir() -> Path:
    """$PROMPT_AUTOCOMPLETE_HOME, or the user data directory of the application."""
    override = os.environ.get(HOME_ENV)
    return Path(override).expanduser() if override else platformdirs.user_data_path(APP_NAME)


def default_history_path() -> Path:
    return data_dir() / "repl-history"
