"""Storage back-ends, one per site kind, behind the contract in :mod:`providers.base`.

The engine creates providers through :func:`providers.registry.create_provider` and never
imports a concrete provider module.
"""
