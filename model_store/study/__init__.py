"""The original study's models: a word LSTM and a masked LM (training, loading, perplexity),
and its blind human rating session. The product's completion does not use them; their
engine adapters are in ``server.engine.study``."""
