"""What the parent's SQLite writes cost, with the secondary indexes in place or built after.

    python bench/sqlite_writes.py INDEX.klpidx

Reads every row of a complete index (e.g. the amd64 vmlinux's), then inserts them into a fresh
file the way `IndexWriter.add_fact_rows` does (`executemany`, batches of 20,000 rows, one
transaction each, `journal_mode=OFF`, `synchronous=OFF`): once with the schema's secondary
indexes created first, once without them and `CREATE INDEX` afterwards. Prints CPU seconds.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))

from klp_lsp.index.schema import SCHEMA  # noqa: E402

_BATCH = 20_000


def load(
    rows: dict[str, list[tuple[object, ...]]], schema: str, after: list[str]
) -> tuple[float, float]:
    """CPU seconds of the inserts, and of the `after` statements."""
    with tempfile.TemporaryDirectory() as tmp:
        con = sqlite3.connect(Path(tmp) / "bench.klpidx")
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.executescript(schema)
        started = time.process_time()
        for table, values in rows.items():
            if not values:
                continue
            insert = f"INSERT INTO {table} VALUES ({','.join('?' * len(values[0]))})"
            for i in range(0, len(values), _BATCH):
                with con:
                    con.executemany(insert, values[i : i + _BATCH])
        inserted = time.process_time()
        for sql in after:
            con.execute(sql)
        con.commit()
        done = time.process_time()
        con.close()
        return inserted - started, done - inserted


def main() -> None:
    source = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
    tables = [r[0] for r in source.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    rows = {t: source.execute(f"SELECT * FROM {t}").fetchall() for t in tables}
    indexes = [line.strip() for line in SCHEMA.splitlines() if line.startswith("CREATE INDEX")]
    bare = "\n".join(line for line in SCHEMA.splitlines() if not line.startswith("CREATE INDEX"))
    print(f"rows: {sum(len(v) for v in rows.values()):,} in {len(tables)} tables")
    inserts, _ = load(rows, SCHEMA, [])
    print(f"indexes in place:       inserts {inserts:.2f} s CPU")
    inserts, create = load(rows, bare, indexes)
    print(f"indexes after the load: inserts {inserts:.2f} s CPU, then CREATE INDEX {create:.2f} s")


if __name__ == "__main__":
    main()
