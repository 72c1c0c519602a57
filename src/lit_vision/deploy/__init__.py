"""Using trained models: one :class:`~lit_vision.deploy.model.DeployedModel` per model (``model``: the interface,
run-dir checkpoint lookup and the onnxruntime backend; ``checkpoint_backend``: PyTorch; ``loader``: picks one),
classifying files and ensembles (``inference``, ``ensembles``), decision thresholds (``operating_point``), ONNX export
and its metadata schema (``onnx_export``, ``onnx_schema``), the HTTP service (``server``) and its client
(``http_client``).

No imports here: the torch-free ONNX server imports ``deploy.server``, ``deploy.loader`` and ``deploy.model``
without torch.
"""
