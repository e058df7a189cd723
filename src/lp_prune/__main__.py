"""`python -m lp_prune` and `fabric run <this file> ...` both start the CLI (the file of the installed
package: `python -c 'import lp_prune.__main__ as m; print(m.__file__)'`)."""

import sys

from lp_prune.cli import main

if __name__ == "__main__":
    sys.exit(main())
