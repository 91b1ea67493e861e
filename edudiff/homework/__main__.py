"""``python -m edudiff.homework check|student|grade`` (see ``--help``)."""

import sys

from .cli import main

sys.exit(main())
