"""The bottom layer: what every other part of the ledger uses and that uses nothing of it.

Errors, configuration from the environment, the Arguments-cell parser, Markdown tables,
a row's cells by role, and the filter language. Standard library only: the read commands
import these before they know which database they talk to.
"""
