"""`python -m agent_sandbox` runs the CLI."""

import sys

from .cli import main

sys.exit(main())
