"""Writing result tables (benchmarks, analysis tools)."""
import csv
from typing import List


def write_csv(rows: List[dict], path: str) -> None:
    """One row per dict; the columns are the first row's keys."""
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
