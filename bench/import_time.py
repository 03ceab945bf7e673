"""What importing OpenRooms costs, against ``python -c pass`` measured in the same run.

    python bench/import_time.py              # best of 7 fresh interpreters per line
    python bench/import_time.py --repeat 15

Each line runs a fresh interpreter that reads its resident memory (``VmRSS``, or
``ru_maxrss`` where there is no /proc), times the statement with ``perf_counter``, and
reads the memory again; the baseline line runs ``pass`` the same way. Reported: the
statement's own time, its memory over the baseline's, the modules it added, and the
whole interpreter's wall time over ``python -c pass``. The target for ``import
openrooms`` is at most 0.1 s and 10 MiB. This machine is shared and noisy: read the
best-of figures and the ratios, not one run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]

STATEMENTS = [
    "pass",
    "import openrooms",
    "import openrooms.engine",
    "from openrooms import WorkflowBuilder, open_runtime",
]
TARGET_S, TARGET_MIB = 0.1, 10.0

PROBE = """
import sys, time, json
def rss_kib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
modules = len(sys.modules)
before = rss_kib()
t0 = time.perf_counter()
{statement}
took = time.perf_counter() - t0
print(json.dumps([took, rss_kib() - before, len(sys.modules) - modules]))
"""


def measure(statement: str, repeat: int) -> tuple[float, float, int, float]:
    """Best-of-*repeat* (seconds, KiB of RSS added, modules added, interpreter wall time)."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(statement=statement)],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout
        wall = time.perf_counter() - start
        took, kib, modules = json.loads(out)
        runs.append((took, kib, modules, wall))
    return (
        min(r[0] for r in runs),
        min(r[1] for r in runs),
        min(r[2] for r in runs),
        min(r[3] for r in runs),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="fresh interpreters per line")
    args = parser.parse_args()
    results = {s: measure(s, args.repeat) for s in STATEMENTS}
    _, base_kib, _, base_wall = results["pass"]
    print(f"best of {args.repeat}; baseline `python -c pass`: {base_wall * 1000:.1f} ms wall")
    print(f"{'statement':<54}{'import':>10}{'RSS':>11}{'modules':>9}{'wall':>12}")
    for statement, (took, kib, modules, wall) in results.items():
        if statement == "pass":
            continue
        mib = (kib - base_kib) / 1024
        print(
            f"{statement:<54}{took * 1000:>8.1f}ms{mib:>+8.1f}MiB{modules:>9}"
            f"{(wall - base_wall) * 1000:>+10.1f}ms"
        )
    took, kib, _, _ = results["import openrooms"]
    mib = (kib - base_kib) / 1024
    ok = took <= TARGET_S and mib <= TARGET_MIB
    print(
        f"target `import openrooms` <= {TARGET_S:g} s and {TARGET_MIB:g} MiB: "
        f"{took:.3f} s, {mib:+.1f} MiB -> {'met' if ok else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
