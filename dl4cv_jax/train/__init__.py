"""Training: the train state, the jit-compiled steps, sharding over devices, checkpoints, callbacks and the loop."""
