"""Training: the one explicit loop, its data sampling, optimizer and schedule, and checkpoints."""
