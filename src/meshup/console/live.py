"""How a page region stays current while something moves: the one place that decides it.

A region (its id is ``live``) is in one of three modes, named by its ``data-live`` attribute:

- ``stream`` while a step's job runs: htmx's ``sse`` extension opens the console's event stream
  (``…/live/events``), which follows the API's live job events. Each change arrives as a ``live``
  event whose data is the region's body, swapped in place (the connection stays open). When the
  job ends, one ``end`` event carries the whole region in its final state and replaces it, which
  closes the connection.
- ``polling``, the fallback: the region fetches its own fragment URL every second and replaces
  itself. A streaming region falls back to it when the stream fails (htmx's ``htmx:sseError``
  makes the region fetch that URL once, and the fragment URL always answers a polling region),
  when the stream hands over (an ``end`` event carrying a polling region: signed out, the API
  unavailable, or the stream closed before the job ended), and in a browser without
  ``EventSource`` (``static/live.js`` turns the stream into one fetch of the fragment URL).
- ``idle`` when nothing moves: no trigger, no connection.

Nothing here depends on the pages or routes: they pass the mode decided below to the template.
"""

from __future__ import annotations

from enum import StrEnum

from markupsafe import Markup

POLL_INTERVAL = "1s"
BODY_EVENT = "live"  # a change: the data is the region's body
END_EVENT = "end"  # the last event of a stream: the data is the whole region


class Mode(StrEnum):
    IDLE = "idle"
    POLLING = "polling"
    STREAM = "stream"


def page_mode(active: bool, job_id: str) -> Mode:
    """A page, or the answer to an action: stream the job of the step that runs."""
    if not active:
        return Mode.IDLE
    return Mode.STREAM if job_id else Mode.POLLING


def fragment_mode(active: bool) -> Mode:
    """The fragment URL, fetched by polling or by a stream that failed: it keeps polling."""
    return Mode.POLLING if active else Mode.IDLE


def final_mode(active: bool, job_id: str, followed: str) -> Mode:
    """The region a stream of job ``followed`` ends with. A new stream only for another job (a
    step started meanwhile): one for the same job would end at once, over and over."""
    if not active:
        return Mode.IDLE
    return Mode.STREAM if job_id and job_id != followed else Mode.POLLING


def live_region(mode: Mode, url: str, events_url: str = "") -> Markup:
    """Attributes of the element that holds a live region: ``url`` is its fragment URL."""
    if mode is Mode.IDLE:
        return Markup('id="live" data-live="idle"')
    if mode is Mode.POLLING:
        # Markup.format escapes the URLs.
        return Markup(
            'id="live" data-live="polling" hx-get="{}" hx-trigger="every {}" hx-swap="outerHTML"'
        ).format(url, POLL_INTERVAL)
    return Markup(
        'id="live" data-live="stream" hx-ext="sse" sse-connect="{}" sse-swap="{}" hx-swap="outerHTML"'
        ' hx-get="{}" hx-trigger="htmx:sseError"'
    ).format(events_url, END_EVENT, url)


def live_body(mode: Mode) -> Markup:
    """Attributes of the region's body: while streaming, each change replaces what is inside."""
    if mode is Mode.STREAM:
        return Markup('class="live-body" sse-swap="{}" hx-swap="innerHTML"').format(BODY_EVENT)
    return Markup('class="live-body"')
