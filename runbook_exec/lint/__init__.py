"""`runbook-exec check`: the rules, their findings and ShellCheck."""
