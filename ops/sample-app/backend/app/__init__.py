"""Sample backend for the runbook: a small FastAPI service that stands in for the real one."""
