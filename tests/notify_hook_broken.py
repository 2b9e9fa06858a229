"""A NOTIFY_HOOK module that cannot be imported."""

raise ImportError("this module needs a package that is not installed")
