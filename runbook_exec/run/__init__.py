"""Running a plan: the bash session, the executor, resume state, locks, the console, targets."""
