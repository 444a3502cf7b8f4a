"""Run every benchmark section and write BENCHMARKS.md (``make bench``)."""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import sys
import time
import traceback

#: Section modules, in the order they appear in BENCHMARKS.md.
SECTIONS = ["bench.layer", "bench.redis", "bench.interface", "bench.stack"]


def machine_line() -> str:
    cpus = os.cpu_count()
    return f"{platform.system()} {platform.machine()}, {cpus} cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("sections", nargs="*", help="module names (default: all), e.g. bench.layer")
    parser.add_argument("-o", "--output", default="BENCHMARKS.md")
    args = parser.parse_args(argv)
    names = args.sections or SECTIONS
    parts = [
        "# Benchmarks\n",
        f"Written by `make bench` on {datetime.date.today().isoformat()} ({machine_line()}). "
        "Every peer in a table was measured in the same run on the same machine; read the "
        "ratios, not the absolute numbers.\n",
    ]
    failed = 0
    for name in names:
        started = time.monotonic()
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            section = importlib.import_module(name).run()
        except Exception:
            failed += 1
            traceback.print_exc()
            section = f"## {name}\n\nThis section failed to run; see the output of `make bench`.\n"
        parts.append(section.rstrip() + "\n")
        print(f"   {name} took {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    with open(args.output, "w", encoding="utf-8") as out:
        out.write("\n".join(parts))
    print(f"wrote {args.output}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
