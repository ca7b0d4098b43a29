"""``python -m ptycho``: the ``ptycho`` command (see ``ptycho.cli``)."""
import sys

from ptycho.cli import main

if __name__ == "__main__":
    sys.exit(main())
