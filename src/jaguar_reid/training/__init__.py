"""Training: the loss, optimizer and parameter groups, the loop, and its summary."""
