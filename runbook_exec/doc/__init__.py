"""Reading a runbook: Markdown cells, their options grammar, heading ids, Runme files."""
