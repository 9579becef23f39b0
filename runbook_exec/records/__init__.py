"""What a run leaves: reports, cell results, the release log, the final rescan, evidence for the site."""
