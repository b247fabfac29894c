"""Framework adapters: numpy, torch, jax, tensorflow — each imported only when asked for.

``from fedgroups.adapters import numpy as fgnp`` (no framework), ``... import torch``
(needs the ``torch`` extra), ``... import jax`` (``jax``), ``... import tensorflow`` (``tf``).
"""
