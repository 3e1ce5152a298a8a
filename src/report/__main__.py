"""``python -m src.report``."""

import sys

from src.report.cli import main

sys.exit(main())
