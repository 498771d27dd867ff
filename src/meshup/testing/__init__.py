"""Testing with meshup: a real server per test session, reset between tests, on a manual clock.

``pytest`` picks up the fixtures (``meshup_server``, ``meshup``, ``meshup_credentials``,
``meshup_asm_client``) through the plugin in :mod:`meshup.testing.plugin`; code that does not use
pytest starts a server with ``with MeshupServer(seed=...) as server:``.
"""

from meshup.testing.server import DEFAULT_SEED, Credentials, MeshupServer, credentials_from_seed

__all__ = ["DEFAULT_SEED", "Credentials", "MeshupServer", "credentials_from_seed"]
