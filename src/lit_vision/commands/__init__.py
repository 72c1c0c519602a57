"""The commands: thin modules on top of the library, each run as ``python -m lit_vision.<name>`` or
``lit-vision <name>``. They never import each other; they share :mod:`lit_vision.commands.runner`. No imports here,
so ``lit-vision --help`` stays instant."""

#: every command, name → one line for ``lit-vision --help`` (a module ``lit_vision/commands/<name>.py`` each)
COMMANDS: dict[str, str] = {
    "train": "fit, test with the best checkpoint, and write the run's report",
    "evaluate": "score a trained checkpoint on a data config, reported like a training run",
    "xgb": "XGBoost on a trained classifier's penultimate-layer embeddings",
    "baseline": "notebook 000's classical baselines, PCA + RandomForest / QDA",
    "inspect": "look at a dataset before training on it: sample grids, class counts, pixel statistics",
    "audit": "find duplicates, train/test leaks, likely label errors, outliers and unusable images in a dataset",
    "predict": "classify your own images with one or more trained models",
    "compare": "one side-by-side table of finished runs",
    "sweeps": "(re)write the summary of a finished or killed sweep",
    "reproduce": "every notebook row as its own run, one at a time, then the tables",
    "export_backbone": "a trained timm backbone as a .safetensors weights file",
    "export": "a run as a deployable ONNX model",
    "serve": "an HTTP service for an exported .onnx, a run dir or a .ckpt",
    "rerun": "run a finished run's command again",
    "prepare": "an image folder of any size as streaming shards for data=shards (parallel, resumable)",
    "tune": "an Optuna hyperparameter search, every trial a training run (pruned, resumable, parallel)",
}
