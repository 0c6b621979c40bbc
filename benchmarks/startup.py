"""Start-up cost: `python run.py --help` and `import numerlab.pipeline`, against a bare
`python -c pass` baseline in the same process (median of --repeats fresh interpreters).

The goal: `--help` under 2.5 s, and importing the pipeline pulls in none of torch,
lightning, wandb, lightgbm, xgboost, numerapi (they are imported where used).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "wandb", "lightgbm", "xgboost", "numerapi")


def median_seconds(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    baseline = median_seconds([py, "-c", "pass"], args.repeats)
    help_s = median_seconds([py, str(ROOT / "run.py"), "--help"], args.repeats)
    import_s = median_seconds([py, "-c", "import numerlab.pipeline"], args.repeats)
    loaded = subprocess.run(
        [py, "-c", ("import sys, numerlab.pipeline; "
                   f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")],
        check=True, capture_output=True, text=True, cwd=ROOT).stdout.strip()
    print(f"median of {args.repeats} fresh interpreters")
    print(f"python -c pass (baseline):      {baseline:6.3f} s")
    print(f"python run.py --help:           {help_s:6.3f} s  ({help_s / baseline:.1f}x baseline;"
          f" goal < 2.5 s: {'met' if help_s < 2.5 else 'NOT met'})")
    print(f"import numerlab.pipeline:       {import_s:6.3f} s  "
          f"({import_s / baseline:.1f}x baseline)")
    print(f"heavy modules it imports:       {loaded or 'none'}")


if __name__ == "__main__":
    main()
