"""prompt-repl: a terminal REPL that completes text-to-image prompts through prompt-ls."""

__version__ = "0.1.0"
