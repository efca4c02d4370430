"""python -m bench [NAME ...]: run the named benchmarks (default: all that exist)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith("bench_"))


def main(argv: list[str] | None = None) -> int:
    names = available()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[n.removeprefix("bench_") for n in names] or None)
    args = parser.parse_args(argv)
    chosen = [f"bench_{n}" for n in args.names] or names
    if not chosen:
        print("no benchmarks yet")
        return 1
    for name in chosen:
        module = importlib.import_module(f"bench.{name}")
        print(f"\n=== {name.removeprefix('bench_')} ===", flush=True)
        status = int(module.main())
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
