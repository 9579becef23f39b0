"""What the command line dispatches to: the run command and its steps, and the rollout over targets."""
