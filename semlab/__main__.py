"""`python -m semlab ...` (and `torchrun ... -m semlab train ...`) = the `semlab` command."""

import sys

from semlab.cli import main

sys.exit(main())
