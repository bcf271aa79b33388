"""Stage 5: the real test sets (:mod:`.datasets`), classifiers and metrics (:mod:`.evaluate`), the stage
runner (:mod:`.stage`), markdown tables (:mod:`.tables`) and the paper's numbers (:mod:`.paper`)."""
