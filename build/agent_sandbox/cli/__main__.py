"""`python -m agent_sandbox.cli` runs the CLI."""

import sys

from . import main

sys.exit(main())
