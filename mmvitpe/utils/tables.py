"""Writing result tables (benchmarks, analysis tools)."""
import csv
from typing import List, Optional, Sequence

from .io import atomic_write


def write_csv(rows: List[dict], path: str, columns: Optional[Sequence[str]] = None) -> None:
    """One row per dict; the columns are ``columns`` (then ``rows`` may be empty: a
    header only) or else the first row's keys.

    Written atomically (:func:`~mmvitpe.utils.io.atomic_write`): a reader, or a run
    killed while writing, never sees half a table.
    """
    with atomic_write(path) as tmp, open(tmp, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(columns or rows[0]))
        writer.writeheader()
        writer.writerows(rows)
