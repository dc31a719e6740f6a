"""ledger: an experiment log kept as a database, with exact re-runs of any logged run."""

__version__ = "0.1.0"
