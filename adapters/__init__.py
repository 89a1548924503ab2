"""Adapters: one module per provider protocol (and the routers).

Each module registers its classes with `gateway.registry.register`; the registry imports every
module of this package, so a new provider is one new file here.
"""
