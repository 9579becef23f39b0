"""What the command line dispatches to: one module per command."""
