"""What a run leaves behind: run-dir names and default outputs (``paths``), ``history.csv`` (``history``), reports
and plots (``reporting``, ``plots``), MLflow tracking (``tracking``), sweep summaries (``sweep_summary``), seed
statistics (``seeds``) and markdown tables (``markdown``).

No imports here: compare, sweeps and reproduce read tables through this package without importing torch.
"""
