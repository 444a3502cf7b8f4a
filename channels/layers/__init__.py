"""Channel layers shipped with the ``channels`` package.

- :mod:`channels.layers.inmemory` — ``InMemoryChannelLayer``: the whole ASGI 1 contract
  inside one process (``runserver``, tests).
- :mod:`channels.layers.redis` — ``RedisChannelLayer``: for more than one host.

The shared-memory layer, the default, lives in the top-level ``shmlayer`` package. Every
layer subclasses ``shmlayer.contract.BaseChannelLayer`` and passes the one conformance
suite in ``tests/layers/test_conformance.py``.

This package imports nothing itself (no Django): load a layer by its module path.
"""
