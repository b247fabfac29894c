"""Federated training simulation of transformer language models on grouped datasets.

Stages, one module each: ``config`` -> ``datasets`` -> ``tokenizer`` -> ``client_data`` ->
``model`` -> ``algorithms`` (client update, running aggregate, server update) ->
``federation`` (one round) -> ``backends`` -> ``simulation`` (the loop, with
``personalization``, ``checkpoint``, ``metrics``, ``plots``) -> ``cli``.
Nothing is imported here, so ``import fedgroups.fl`` stays light.
"""
