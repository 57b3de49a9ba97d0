"""Completion logic that knows no LSP: usable from the server, benchmarks and tests alike."""

from server.engine.engine import CompletionEngine
from server.engine.types import Cancelled, EngineSettings, Suggestion

__all__ = ["Cancelled", "CompletionEngine", "EngineSettings", "Suggestion"]
