"""What a run leaves: reports, cell results, the release log, evidence for the site."""
