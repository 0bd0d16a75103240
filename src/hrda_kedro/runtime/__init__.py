"""Glue between validated parameters and the library, one concern per module.

- :mod:`.memory`: the process-wide host allocator setting (glibc keeps freed memory).
- :mod:`.devices`: CPU or CUDA, precision and memory layout from ``runtime``.
- :mod:`.models`: the HRDA model from ``model``, from a checkpoint, and their checks.
- :mod:`.fingerprints`: hashes that tell a stage whether its checkpoint still applies.
- :mod:`.training_data`: the training stages' data sets and the checks of their images.

Kept out of the node modules so that every pipeline builds models, picks devices and
checks checkpoints the same way.
"""
