"""Stage 4: task models. The product :class:`~unigen.tam.model.TaskModel` (:mod:`.model`, with the BiLSTM of
:mod:`.lstm`), its training rows (:mod:`.data`), the losses (:mod:`.losses`, SunGen's too), the denoising
memory bank (:mod:`.memory`), the training loop (:mod:`.train`) and the stage runner (:mod:`.stage`)."""
