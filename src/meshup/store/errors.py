"""What the store raises besides the database library's own errors."""

from __future__ import annotations

from meshup.errors import Conflict


class Collision(Conflict):
    """A write lost a race to a concurrent transaction (a unique key, a conditional update).

    Services run the use case once more, so the loser gets the answer a serial caller would; it is
    a 409 itself should it ever reach a client.
    """
