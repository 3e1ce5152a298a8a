"""``python -m src.bench [...]`` per-step overhead; ``python -m src.bench steady [...]`` a whole run."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["steady"]:
        from src.bench import steady

        sys.exit(steady.main(argv[1:]))
    from src.bench import overhead

    sys.exit(overhead.main(argv))
