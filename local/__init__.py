"""The local Alibaba Cloud stack: protocol-level emulators used by tests, `make demo` and `make invoke`.

Nothing under functions/ or shared/ may import this package.
"""
