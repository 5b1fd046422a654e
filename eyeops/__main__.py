"""`python -m eyeops ...`: the same command line as the `eyeops` script."""

import sys

from eyeops.cli import main

if __name__ == "__main__":
    sys.exit(main())
