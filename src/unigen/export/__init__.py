"""The task model as a product outside Python training code: ONNX export (:mod:`.onnx_export`), the model and
dataset cards (:mod:`.cards`), and the training rows as a Parquet data set (:mod:`.data`).

The exported model is loaded with :class:`unigen.onnx.OnnxTaskModel`, which needs only onnxruntime,
numpy and tokenizers.
"""
