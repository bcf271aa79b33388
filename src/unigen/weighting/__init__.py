"""Stage 3: SunGen's bi-level sample weighting (:mod:`.sungen`, model-agnostic) and its stage runner
(:mod:`.stage`: builds the weighting task model, resumes, selects the top-K rows)."""
