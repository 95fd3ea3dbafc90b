"""python -m edge_mm, and the frozen executable's entry point."""

import sys

from edge_mm.cli import main

if __name__ == "__main__":
    sys.exit(main())
