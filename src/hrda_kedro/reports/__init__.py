"""Report tables and figures, plain pandas/matplotlib (never imports kedro).

Kept apart from the evaluation nodes so the plots can be reused from a notebook or a
script and tested without a Kedro session.
"""
