"""Agent-facing tools (read a file, list and show experiments, propose an edit, write notes), as
plain functions with JSON schemas, served to the built-in loop and, unchanged, over MCP.

Not built yet: they arrive with the API-model agents. Until then the loop validates proposals in
:func:`harness.experiment.check_proposal`.
"""
