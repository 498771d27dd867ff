"""The ``meshup`` command-line client: meshes, upgrade tasks and mesh jobs over the HTTP API.

Only :mod:`meshup.client.commands` and :mod:`meshup.client.options` are imported when the
``meshup`` command starts; HTTP, rendering and signing load when a client command runs.
"""
