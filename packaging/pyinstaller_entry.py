"""Entry point of the one-folder application build (packaging/workstation.spec).

The same as the `workstation` command: with a sub-command it is the CLI, with
none it opens the window.
"""

import multiprocessing
import sys

from workstation.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # worker processes re-enter the frozen executable
    sys.exit(main())
