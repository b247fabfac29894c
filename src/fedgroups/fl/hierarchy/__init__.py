"""Federations of federations (WorldLM): tree, key-layer attention, residuals, privacy.

Stages, one module each: ``config`` (the ``hierarchy:`` section, per-node settings) ->
``tree`` (nodes from group columns or an explicit list) -> ``attention`` / ``residual``
(pure functions over key-layer tensors) -> ``privacy`` (the DP processor, epsilon from
dp-accounting) -> ``node`` (a federation as a participant) -> ``build`` (data, tree and a
method's switches -> runnable nodes) -> ``runner`` (the loop, checkpoints) with
``evaluation`` (each leaf's model on its held-out groups) and ``report`` -> ``records``
(what a run writes: the contract with ``compare`` / ``plots``).  Nothing is imported here.
"""
