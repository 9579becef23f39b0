"""The ops package around a runbook: env files, preflight, init-env."""
