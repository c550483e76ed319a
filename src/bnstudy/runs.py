"""How a model's runs are named in its outputs: one run per (seed, learning rate) pair.

A model's states and activation histograms are ``{"seed_<k>": ...}``; in a learning-rate
sweep ``{"seed_<k>": {"lr_<x>": ...}}`` (:func:`learning_rate_key`). The training nodes write
these keys and the analysis reads them; both take them from here. No heavy imports.
"""

from __future__ import annotations


def learning_rate_key(learning_rate: float) -> str:
    """``lr_<x>`` with ``x`` the shortest decimal that reads back as the same float
    (``lr_0.035``, ``lr_1e-05``): distinct rates never share a key, and the key is a valid
    file and ``.npz`` name (digits, ``.``, ``e``, ``+``, ``-``)."""
    return f"lr_{float(learning_rate)!r}"
