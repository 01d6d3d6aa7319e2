"""SecantusDB's own command line, with a short lifetime for abandoned transactions.

A process killed in the middle of a transaction (SIGKILL, the OOM killer, a power cut of a
service's host) leaves it open on the server, and the documents it wrote stay locked until
the server reaps it. SecantusDB, like mongod's ``transactionLifetimeLimitSeconds``, waits
60 s: under ``make faults`` a routing killed mid-commit held the cases of its batch, and
its restarted self — handed the same records again — conflicted on them for that whole
minute (recovery 27.9 s, then the unit of work gave up and started over).

The platform's transactions are short: a ``bulkWrite`` and the commit, sent back to back
(tongxin.runtime.uow). SecantusDB counts a transaction's idle time from the start of its
last statement, so the lifetime only has to outlast one statement — a batch's writes take
well under a second on this stack. A transaction that does time out is aborted; its commit
answers with ``TransientTransactionError`` and the unit of work decides the batch again.

The command line has no option for it, so this module hands SecantusDB's ``main`` a server
class with a different default and otherwise changes nothing. docs/operations.md gives
the same advice for MongoDB in production (``transactionLifetimeLimitSeconds``).
"""

from __future__ import annotations

from typing import Any

TRANSACTION_LIFETIME_S = 8.0


def main(argv: list[str] | None = None) -> int:
    """``python -m secantus``, the same flags, the short transaction lifetime."""
    # imported here: SecantusDB is the local extra, which production images leave out
    from secantus import cli
    from secantus.server import SecantusDBServer

    class Server(SecantusDBServer):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("transaction_lifetime_seconds", TRANSACTION_LIFETIME_S)
            super().__init__(*args, **kwargs)

    cli.SecantusDBServer = Server
    return int(cli.main(argv))


if __name__ == "__main__":
    raise SystemExit(main())
