"""python -m client_tui: the same as the prompt-repl console script."""

import sys

from client_tui.cli import main

sys.exit(main())
