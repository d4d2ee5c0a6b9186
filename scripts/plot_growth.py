#!/usr/bin/env python3
"""Table and plot of how cost grows with the number of variables.

Reads what `cargo bench --bench growth` left behind: criterion's estimates under
target/criterion/ and target/growth-memory.csv. Prints a Markdown table and writes
docs/growth.png. Needs matplotlib (`pip install matplotlib`).
"""
import csv
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRITERION = ROOT / "target" / "criterion"
IMPLS = ["contextvars", "opentelemetry", "imbl"]
SIZES = [1, 10, 100, 1000, 10000]
GROUPS = {
    "get": "growth get",
    "set with a snapshot alive": "growth set with a snapshot alive",
    "three sets with a snapshot alive": "growth three sets with a snapshot alive",
}
SETS = [1, 3]


def median_ns(group, impl, n):
    path = CRITERION / group / impl / str(n) / "new" / "estimates.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"]


def main():
    times = {
        (label, impl, n): median_ns(group, impl, n)
        for label, group in GROUPS.items()
        for impl in IMPLS
        for n in SIZES
    }
    memory = {}
    with open(ROOT / "target" / "growth-memory.csv") as f:
        for row in csv.DictReader(f):
            key = (row["implementation"], int(row["vars"]), int(row["sets"]))
            memory[key] = int(row["bytes_per_copy"])

    def cell(value, unit):
        return "—" if value is None else f"{value:,.1f} {unit}" if unit == "ns" else f"{value:,} {unit}"

    def sets_label(sets):
        return "one set" if sets == 1 else f"{sets} sets"

    # Two tables: times, then memory (one table would be too wide to read).
    print("| vars | " + " | ".join(f"{label}: {impl}" for label in GROUPS for impl in IMPLS) + " |")
    print("|---:|" + "---:|" * (len(GROUPS) * len(IMPLS)))
    for n in SIZES:
        row = [cell(times[(label, impl, n)], "ns") for label in GROUPS for impl in IMPLS]
        print(f"| {n:,} | " + " | ".join(row) + " |")
    print()
    print("| vars | " + " | ".join(f"memory per copy, {sets_label(sets)}: {impl}"
                                   for sets in SETS for impl in IMPLS) + " |")
    print("|---:|" + "---:|" * (len(SETS) * len(IMPLS)))
    for n in SIZES:
        row = [cell(memory.get((impl, n, sets)), "B") for sets in SETS for impl in IMPLS]
        print(f"| {n:,} | " + " | ".join(row) + " |")

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    panels = [
        (label, "ns", lambda impl, n, label=label: times[(label, impl, n)]) for label in GROUPS
    ] + [
        ("memory per diverged copy (one set)", "bytes",
         lambda impl, n: memory.get((impl, n, 1))),
    ]
    for ax, (title, unit, value) in zip(axes, panels):
        for impl, marker in zip(IMPLS, "os^"):
            points = [(n, value(impl, n)) for n in SIZES if value(impl, n) is not None]
            if points:
                ax.plot(*zip(*points), marker=marker, label=impl)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("variables bound")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("Cost vs number of bound variables (criterion medians; memory: bytes allocated by a copy and one set)")
    fig.tight_layout()
    out = ROOT / "docs" / "growth.png"
    fig.savefig(out, dpi=110)
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
