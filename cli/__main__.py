"""python -m cli: the same as the flow-receipts command."""

from cli.main import main

main()
