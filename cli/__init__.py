"""flow-receipts, the operations command line: a thin edge over shared/ (parse, call, print).

Not shipped to Function Compute (local/build.py copies functions/ and shared/ only).

Layout, for whoever adds a command: ``cli.main`` builds the app from one module per command group (``orders``,
``dead_letters``, ``outbox``) and one per top-level command set (``charge``, ``admin``); ``cli.common`` has the
exit codes, the errors that map onto them and the ledger / settings / flow API a command needs; ``cli.output``
prints (rich tables for people, ``--json`` for scripts, progress bars on stderr); ``cli.params`` has the shared
options (``--json``, durations).
"""
