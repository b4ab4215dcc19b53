"""Wall time of `mip --help` and `mip list models` (target < 0.5 s: torch is imported lazily).

    python bench/cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def measure(args: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "miprometheus", *args], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    baseline = measure(["--version"], repeats)
    for args in (["--help"], ["list", "models"], ["list", "problems", "SerialRecall"]):
        print(f"mip {' '.join(args):<28} median {measure(args, repeats):.3f} s  (target < 0.5 s)")
    print(f"(python -m miprometheus --version: {baseline:.3f} s, the interpreter's own start-up included)")


if __name__ == "__main__":
    main()
