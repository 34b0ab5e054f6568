"""Base layer: errors, paths, the runtime (backend, devices, precision, seeds, memory) and run-folder I/O.

Imports nothing else from ``Functions``; every other layer may import it.
"""
