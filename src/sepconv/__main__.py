"""``python -m sepconv``: the ``sepconv`` command, for an interpreter whose scripts are not on
the PATH."""

import sys

from sepconv.cli import main

if __name__ == "__main__":
    sys.exit(main())
