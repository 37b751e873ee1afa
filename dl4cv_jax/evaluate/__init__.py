"""The second script: evaluate a trained workdir on a split, predict new images, and draw pictures of runs.

`cli.run_eval`, `cli.run_predict` and `cli.run_compare` are what `main.py --mode=eval|predict|compare` call.
This file imports nothing on purpose: `train.loop` imports `evaluate.plots` for its curves callback, and
`evaluate.restore` imports `train.loop`, so an eager import here would be circular.
"""
