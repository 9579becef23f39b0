"""Publishing: the MkDocs plugin, run cards and the pages built from the release log."""
