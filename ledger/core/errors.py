"""The error a user can act on. No imports: the CLI catches it without loading the database layer."""


class LedgerError(Exception):
    """An error the user can act on; the CLI prints it as one line."""


class RunInterrupted(LedgerError):
    """A training run stopped by Ctrl-C or a kill; its row is recorded `interrupted`, resumable."""

    def __init__(self, name: str):
        super().__init__(f"interrupted: {name} is marked interrupted; continue it with "
                         f"`ledger reproduce {name} --resume`")
        self.name = name
