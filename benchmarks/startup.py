"""Start-up wall time of the CLI: ``difforge --help``, ``--version`` and ``plugins``, median of
``--runs`` fresh processes each (after one warm-up run, so the OS file cache is warm), and the
slowest imports of ``--help`` by ``python -X importtime``.

    python benchmarks/startup.py [--runs 5] [--out benchmarks/results/startup.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {"difforge --help": ["--help"], "difforge --version": ["--version"], "difforge plugins": ["plugins"]}


def wall_time(argv: list[str]) -> float:
    """Seconds one ``python -m difforge.cli ARGV`` process takes, start to exit."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "difforge.cli", *argv], check=True, capture_output=True)
    return time.perf_counter() - started


def slowest_imports(argv: list[str], top: int = 8) -> list[tuple[str, float]]:
    """The ``top`` imports with the largest cumulative time (s) under ``python -X importtime``."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "difforge.cli", *argv], capture_output=True,
                          text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S.*)$", line)
        if match:
            rows.append((match.group(2).strip(), int(match.group(1)) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:top]


def main() -> None:
    """Measure and print the table (and write it as JSON with ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    results = {}
    for name, argv in COMMANDS.items():
        wall_time(argv)  # warm-up
        times = [wall_time(argv) for _ in range(args.runs)]
        results[name] = {"median_s": round(statistics.median(times), 3), "runs": [round(t, 3) for t in times]}
    imports = slowest_imports(["--help"])
    print(f"| command | median of {args.runs} (s) |\n|---|---|")
    for name, row in results.items():
        print(f"| `{name}` | {row['median_s']:.2f} |")
    print("\nslowest imports of `difforge --help` (cumulative s):")
    for module, seconds in imports:
        print(f"  {seconds:.3f}  {module}")
    if args.out:
        Path(args.out).write_text(json.dumps({"python": platform.python_version(), "machine": platform.machine(),
                                              "results": results, "slowest_imports_help": imports}, indent=2))


if __name__ == "__main__":
    main()
