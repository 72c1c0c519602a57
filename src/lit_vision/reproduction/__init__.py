"""``python -m lit_vision.reproduce``: every notebook row as its own run, then tables from the runs (no torch here).

* :mod:`~lit_vision.reproduction.plan`: the rows of ``conf/reproduce.yaml``, which runs a call makes, their commands;
* :mod:`~lit_vision.reproduction.launch`: one run as a subprocess — skipped, resumed or started — and its manifest;
* :mod:`~lit_vision.reproduction.tables`: the tables, from ``metrics.json`` and the manifests;
* :mod:`~lit_vision.reproduction.markers`: a generated block between markers in a hand-written markdown file;
* :mod:`~lit_vision.reproduction.machine`: the CPU (and GPU) a run ran on.
"""
