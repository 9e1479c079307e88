"""``python -m bench.cli``: the ``relama-bench`` command."""

import sys

from bench.cli.app import main

sys.exit(main())
