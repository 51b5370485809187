"""Results files damaged as a disk, a network filesystem or another program would damage them."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

DAMAGES = ("truncated", "empty", "wrong_schema", "wrong_type")


def damage(path: Path, how: str) -> None:
    """Damage the results file ``path`` as a disk, a network filesystem or another program would."""
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "wrong_schema":
        pq.write_table(pa.table({"x": [1, 2]}), path)
    else:  # the key columns there, trial_id of another type
        table = pq.read_table(path)
        i = table.schema.get_field_index("trial_id")
        pq.write_table(table.set_column(i, "trial_id", pa.array(range(table.num_rows), pa.int64())), path)
