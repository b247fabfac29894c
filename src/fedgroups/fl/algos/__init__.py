"""Built-in federated algorithms, one per file, each through ``fl/algorithm.py``'s interface.

Names a config can give (``algorithm: {name: ...}``) are listed in
``fedgroups.fl.config.ALGORITHMS``; aggregators, selection rules and update processors
that combine with any of them are in ``robust.py``, ``selection.py`` and ``dp_adaptive.py``
and are named in the ``strategy`` section.
"""
