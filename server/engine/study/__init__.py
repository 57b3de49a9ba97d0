"""The original study's models behind the engine API: the word LSTM and the masked LM.

Benchmark rows and ``prompt-ls`` serve them like the product's model; the product's own
completion never imports this package.
"""
