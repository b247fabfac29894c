"""Federated training simulation of transformer language models on grouped datasets.

Stages, one module each: ``config`` (parsed by ``config_parse``) -> ``datasets`` ->
``tokenizer`` -> ``client_data`` -> ``model`` / ``model_factory`` (your own model) ->
``algorithms`` (client update, running aggregate, server update) -> ``strategy`` (weighting,
update processors, aggregator, server step: the extension point) -> ``federation`` (one
round) -> ``backends`` -> ``simulation`` (the loop, with ``personalization``,
``checkpoint``, ``metrics``, ``loggers``, ``report``, ``plots``) -> ``cli``.  User code
named in a config is resolved by ``plugins``; every user mistake raises an ``errors`` class.
Nothing is imported here, so ``import fedgroups.fl`` stays light.
"""
