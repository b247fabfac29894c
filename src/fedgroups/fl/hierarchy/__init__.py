"""Federations of federations (WorldLM): tree, key-layer attention, residuals, privacy.

Stages, one module each: ``config`` (the ``hierarchy:`` section) -> ``tree`` (nodes from
group columns or an explicit list) -> ``attention`` / ``residual`` (pure functions over
key-layer tensors) -> ``privacy`` (clip + noise processors, accountant) -> ``node`` (a
federation as a participant) -> ``runner`` (the loop, evaluation, checkpoints) ->
``records`` (what a run writes).  Nothing is imported here.
"""
