"""`python -m lp_prune` and `fabric run src/lp_prune/__main__.py` both start the CLI."""

import sys

from lp_prune.cli import main

if __name__ == "__main__":
    sys.exit(main())
