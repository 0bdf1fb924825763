"""Print a pytest-benchmark JSON file as a table of medians and ratios to scikit-learn.

    python benchmarks/report.py bench.json [--markdown]
"""

import json
import sys
from collections import defaultdict


def main(path):
    with open(path) as f:
        report = json.load(f)
    machine = report["machine_info"]
    print(f"machine: {machine.get('cpu', {}).get('brand_raw', machine.get('processor'))}, "
          f"{machine.get('cpu', {}).get('count', '?')} logical cores, Python {machine['python_version']}, "
          f"run {report['datetime']}")
    groups = defaultdict(dict)
    for bench in report["benchmarks"]:
        impl = bench["params"]["impl"]
        # Benchmarks that time several iterations in one call report the time per iteration.
        groups[bench["group"]][impl] = bench["stats"]["median"] / bench["extra_info"].get("iterations", 1)
    print()
    print("| op and shape | implementation | median (s, per iteration where iterated) | speed-up vs sklearn |")
    print("|---|---|---|---|")
    for group, times in groups.items():
        base = times.get("sklearn")
        for impl, median in sorted(times.items(), key=lambda kv: kv[1]):
            ratio = f"{base / median:.2f}x" if base else "-"
            print(f"| {group} | {impl} | {median:.4f} | {ratio} |")


if __name__ == "__main__":
    main(sys.argv[1])
