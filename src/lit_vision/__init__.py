"""lit_vision: reproducible, sweepable image-classification experiments with PyTorch Lightning + Hydra.

Library packages: ``data/``, ``models/``, ``training/``, ``runs/`` (run dirs, reports, tracking), ``deploy/``
(inference, ONNX export, the HTTP service), ``reproduction/``; the commands live apart in ``commands/``.
"""

import os as _os

__version__ = '0.1.0'

# The commands live in lit_vision/commands/, yet `python -m lit_vision.train` (and every other command) keeps
# working: Python lets a package extend its own __path__, the list of folders its submodules are searched in, so
# with commands/ appended `lit_vision.train` is found as commands/train.py. It is appended (searched last) and no
# command shares a name with a module or package of lit_vision (tests/test_structure.py). Code imports
# `lit_vision.commands.<name>`; this path is only for the command lines.
__path__.append(_os.path.join(_os.path.dirname(__file__), "commands"))
