"""One module per model family: how its variables are named in PyTorch checkpoints."""
