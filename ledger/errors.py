"""The error a user can act on. No imports: the CLI catches it without loading the database layer."""


class LedgerError(Exception):
    """An error the user can act on; the CLI prints it as one line."""
