"""flow-receipts: the code the FC functions share (domain, ledger, clients)."""
