"""``python -m src.data.fetch``: find (or download and verify) a dataset and say where it is."""

from __future__ import annotations

import argparse
import os
import sys

from src.data.datamodule import data_roots
from src.data.sources import DATASETS, locate
from src.errors import DatasetError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="fashion_mnist", choices=sorted(DATASETS))
    parser.add_argument("--root", default=os.environ.get("MARGINLOSS_DATA"),
                        help="the data.root of the runs: a folder used alone (default: $MARGINLOSS_DATA, else "
                        "./data, then the system copy, then a download into ./data)")
    parser.add_argument("--fallback", action="store_true", help="as data.fallback=true")
    parser.add_argument("--no-download", action="store_true")
    args = parser.parse_args(argv)
    try:
        folder, fallback = data_roots(args.name, args.root, args.fallback)
        files = locate(args.name, folder, download=not args.no_download, verify=True, fallback=fallback)
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    folders = sorted({str(p.parent) for p in files.values()})
    print(f"{args.name}: all four files verified in {', '.join(folders)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
