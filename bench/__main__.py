"""python -m bench [NAME ...]: run the named benchmarks (default: all that exist, the soak aside).

One name may be followed by its own options: `python -m bench soak --jobs 40 --seed 7`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run by name only (`make soak`): a long correctness run, not a figure beside a baseline.
NOT_BY_DEFAULT = {"bench_soak"}


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith("bench_"))


def main(argv: list[str] | None = None) -> int:
    names = available()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[n.removeprefix("bench_") for n in names] or None)
    args, options = parser.parse_known_args(argv)
    chosen = [f"bench_{n}" for n in args.names] or [n for n in names if n not in NOT_BY_DEFAULT]
    if options and len(chosen) != 1:
        parser.error(f"options {options} need exactly one benchmark name")
    if not chosen:
        print("no benchmarks yet")
        return 1
    for name in chosen:
        module = importlib.import_module(f"bench.{name}")
        print(f"\n=== {name.removeprefix('bench_')} ===", flush=True)
        status = int(module.main(options) if options else module.main())
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
