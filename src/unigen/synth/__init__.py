"""Stages 1-2: synthetic texts from a causal LM (``generate``) and their soft labels and filter (``relabel``).

Pure cores: :mod:`.prompts` (prompt sets), :mod:`.generation` (post-processing, shard plan, one shard),
:mod:`.sampling` (the fast sampler), :mod:`.scoring` (label scores of a text), :mod:`.relabeling` (soft
labels, filter, rule choice). Runners: :mod:`.generate`, :mod:`.relabel`, :mod:`.until_kept` (the two
together until enough texts survive), with :func:`unigen.synth.stage.synthesize` choosing between them.
Shared plumbing is in :mod:`.common`, data cards in :mod:`.cards`.

Kept free of imports so that ``unigen.synth.prompts`` stays light (the config validates prompt sets).
"""
