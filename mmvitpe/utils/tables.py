"""Writing result tables (benchmarks, analysis tools)."""
import csv
from typing import List, Optional, Sequence


def write_csv(rows: List[dict], path: str, columns: Optional[Sequence[str]] = None) -> None:
    """One row per dict; the columns are ``columns`` (then ``rows`` may be empty: a
    header only) or else the first row's keys."""
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(columns or rows[0]))
        writer.writeheader()
        writer.writerows(rows)
