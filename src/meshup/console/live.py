"""How a page region stays current while something moves: the one place that decides it.

Today the region polls its own fragment URL every second with htmx and replaces itself; a region
rendered while nothing moves carries no trigger, so polling stops by itself when a step ends. A
server-sent-events stream of the mesh-job resource can replace this by changing these attributes
(htmx's ``sse`` extension) without touching the pages or routes.
"""

from __future__ import annotations

from markupsafe import Markup

POLL_INTERVAL = "1s"


def live_region(url: str, active: bool) -> Markup:
    """Attributes of the element that holds a live region (its id is ``live``)."""
    if not active:
        return Markup('id="live" data-live="idle"')
    # Markup.format escapes the URL.
    return Markup(
        'id="live" data-live="polling" hx-get="{}" hx-trigger="every {}" hx-swap="outerHTML"'
    ).format(url, POLL_INTERVAL)
