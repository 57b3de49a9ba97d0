"""Benchmarks of the product (reads it, never the reverse): ``python -m benchmarks.run``.

Modules: ``ksr`` (the keystroke-savings simulator, pure), ``baselines`` and ``ngram`` (systems
to compare against), ``engine_system`` and ``lsp_driver`` (the product in-process and over
LSP), ``expansion`` (idea -> prompt metrics), ``systems`` (the registry), ``run`` and
``report`` (orchestration, docs/BENCHMARKS.md and its charts).
"""
