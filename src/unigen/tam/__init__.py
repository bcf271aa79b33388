"""Stage 4: task models. The product :class:`~unigen.tam.model.TaskModel` (:mod:`.model`, with the BiLSTM of
:mod:`.lstm` and its card, :mod:`.model_card`), its training rows (:mod:`.training_data`), the losses
(:mod:`.losses`, SunGen's too), the denoising memory bank (:mod:`.memory`), the training loop (:mod:`.train`)
and the stage runner (:mod:`.stage`)."""
