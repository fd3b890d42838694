"""How Triton is started and deployed: the launcher and the Python-based backend shims.

Imports neither ``export`` nor ``client``.
"""
