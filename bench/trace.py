"""Add up a database command trace: where each service's database time goes.

Run a bench with ``--service-env TONGXIN_MONGO_TRACE=/tmp/trace.tsv`` (every service's
client then appends one line per command: tag, command, ``db.collection``, microseconds,
error code), then::

    .venv/bin/python -m bench.trace /tmp/trace.tsv [--per N]

prints, per service database and command, the count (per request with ``--per``), the
client-side latency (mean, total) and the failures by error code (112 = WriteConflict).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field


@dataclass
class Row:
    """One (database, command, collection)."""

    count: int = 0
    micros: int = 0
    errors: Counter[str] = field(default_factory=Counter)


def load(path: str) -> dict[tuple[str, str, str], Row]:
    """Rows by (database, command, collection).

    >>> import tempfile, os
    >>> f = tempfile.NamedTemporaryFile("w", delete=False, suffix=".tsv")
    >>> line = "1\\tinsert\\tx_intake.outbox\\t{}\\t{}\\n"
    >>> _ = f.write(line.format(900, 0) + line.format(100, 112))
    >>> f.close()
    >>> r = load(f.name)[("x_intake", "insert", "outbox")]
    >>> (r.count, r.micros, dict(r.errors))
    (2, 1000, {'112': 1})
    >>> os.unlink(f.name)
    """
    rows: dict[tuple[str, str, str], Row] = defaultdict(Row)
    with open(path) as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 5:
                continue
            _, name, ns, micros, code = parts
            db, _, coll = ns.partition(".")
            row = rows[(db, name, coll)]
            row.count += 1
            row.micros += int(micros)
            if code != "0":
                row.errors[code] += 1
    return dict(rows)


def main(argv: list[str] | None = None) -> int:
    """Print the table."""
    ap = argparse.ArgumentParser(prog="python -m bench.trace", description=__doc__)
    ap.add_argument("path")
    ap.add_argument("--per", type=float, default=0.0, help="divide counts by this (requests)")
    args = ap.parse_args(argv)
    rows = load(args.path)
    per = args.per or 1.0
    print(
        f"{'database':28} {'command':16} {'collection':22} {'count':>9} {'mean ms':>8} "
        f"{'total s':>8}  errors"
    )
    by_db: dict[str, float] = defaultdict(float)
    for (db, name, coll), r in sorted(rows.items(), key=lambda kv: (kv[0][0], -kv[1].micros)):
        by_db[db] += r.count / per
        errors = ", ".join(f"{c}×{n}" for c, n in r.errors.most_common())
        print(
            f"{db:28} {name:16} {coll:22} {r.count / per:9.2f} {r.micros / r.count / 1000:8.2f} "
            f"{r.micros / 1e6:8.2f}  {errors}"
        )
    print()
    for db, n in sorted(by_db.items()):
        print(f"{db:28} commands {n:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
