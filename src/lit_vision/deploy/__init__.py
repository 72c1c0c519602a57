"""Using trained models: predictors and ensembles (``inference``, ``ensembles``), decision thresholds
(``operating_point``), ONNX export (``onnx_export``), the HTTP service (``server``) and its client (``http_client``).

No imports here: the torch-free ONNX server imports ``deploy.server`` and ``deploy.operating_point`` without torch.
"""
