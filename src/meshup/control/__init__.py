"""The control API under ``/meshup-api/``: reset, snapshots, seed, the simulated clock, faults.

An extension for test suites, separate from Huawei's paths; see ``docs/control-api.md``.
"""
