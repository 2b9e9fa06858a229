"""The work the functions and the CLI do, built from the domain and the adapters."""
