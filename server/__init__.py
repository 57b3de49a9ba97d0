"""prompt-ls: a language server that completes text-to-image prompts offline."""

__version__ = "0.1.0"
