"""The generic training loop: one stage's step, devices, data parallelism, history and
checkpoint/resume. The self-training parts the step calls live in :mod:`hrda_kedro.hrda.uda`."""
