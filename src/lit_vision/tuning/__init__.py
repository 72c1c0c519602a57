"""Hyperparameter search on Optuna (``python -m lit_vision.tune``): search spaces from ``conf/hparams_search/``,
studies in an RDB storage (SQLite locally, a database server for workers on several machines), every trial a
normal training run that reports its validation metric each epoch so a pruner can stop it."""
