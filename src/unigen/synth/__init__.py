"""Stages 1-2: synthetic texts from a causal LM (generate) and their soft labels and filter (relabel).

Pure cores, named after what they compute: :mod:`.generation` (post-processing, shard plan, one shard),
:mod:`.sampling` (the fast sampler), :mod:`.scoring` (label scores of a text), :mod:`.relabeling` (soft
labels, filter, rule choice). Runners, named ``*_stage``: :mod:`.generate_stage`, :mod:`.relabel_stage`,
:mod:`.until_kept` (the two together until enough texts survive), with :func:`unigen.synth.stage.synthesize`
choosing between them. Engines: :mod:`.backends` (the one dispatch), :mod:`.ct2_backend`,
:mod:`.vllm_backend`, :mod:`.ray_executor`. Shared plumbing is in :mod:`.common`, data cards in
:mod:`.datacards`; the prompt sets are :mod:`unigen.prompts`.
"""
