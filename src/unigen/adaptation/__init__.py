"""``unigen adapt``: a task model made better on a user's own unlabeled texts, still without labels
(docs/adapt.md).

Pure cores, named after what they compute: :mod:`.priors` (label-free class-prior estimates, the logit
offset that moves the decision threshold), :mod:`.pseudo_labels` (pseudo-labels, per-class selection, the
training mix). The runner is :mod:`.stage` (:func:`unigen.adaptation.stage.adapt`, the public
``unigen.adapt``).
"""
