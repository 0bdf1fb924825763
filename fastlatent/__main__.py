"""``python -m fastlatent``: the same as the ``fastlatent`` command."""

import sys

from .cli import main

sys.exit(main())
