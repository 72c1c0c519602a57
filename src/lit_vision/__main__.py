"""``python -m lit_vision <command> [args ...]``: the same as ``lit-vision <command> ...`` (:mod:`lit_vision.cli`)."""

from lit_vision.cli import main

if __name__ == "__main__":
    main()
