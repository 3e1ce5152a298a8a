"""``python -m src.data.fetch``: find (or download and verify) a dataset and say where it is."""

from __future__ import annotations

import argparse
import sys

from src.data.idx import DatasetError
from src.data.sources import DATASETS, locate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="fashion_mnist", choices=sorted(DATASETS))
    parser.add_argument("--root", default="data", help="folder looked in first and downloaded into")
    parser.add_argument("--no-download", action="store_true")
    args = parser.parse_args(argv)
    try:
        files = locate(args.name, args.root, download=not args.no_download, verify=True)
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    folders = sorted({str(p.parent) for p in files.values()})
    print(f"{args.name}: all four files verified in {', '.join(folders)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
