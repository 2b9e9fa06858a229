"""One module per outside world: Alicom APIs, MNS, FC, the ledger database."""
