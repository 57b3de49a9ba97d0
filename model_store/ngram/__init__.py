"""Word n-gram statistics of a prompt corpus, split by job as KenLM and NLTK's ``lm`` split them.

- ``counting``: count a corpus's n-grams and estimate interpolated Kneser-Ney probabilities,
  then prune them (by count, and by relative entropy as Stolcke 1998 does) into a smaller model;
- ``storage``: the on-disk format (full float tables in the store, an 8-bit quantised pack in
  the package), memory-mapped, checked file by file;
- ``model``: the query model the engine and the benchmarks ask (probabilities, ranked next
  words, continuations, perplexity). It needs numpy only, never torch.
"""
