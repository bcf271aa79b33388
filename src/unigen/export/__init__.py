"""The task model as a product outside Python training code: ONNX export (:mod:`.onnx_export`) and the
exported model's loader beside it (:mod:`.onnx_model`, :class:`~unigen.export.onnx_model.OnnxTaskModel`,
which needs only onnxruntime, numpy and tokenizers), and the training rows as a Parquet data set
(:mod:`.parquet`, with its card in :mod:`.dataset_card`).
"""
