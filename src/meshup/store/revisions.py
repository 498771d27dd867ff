"""The newest schema revision, read from the migration files without loading Alembic.

Loading Alembic (and Mako and Pygments behind it) costs a tenth of a second at every start; on a
database already at the newest revision a start-up only needs to compare two strings. Anything
this simple reading cannot vouch for (no file, a merge, two heads) yields None, and the caller
then lets Alembic decide.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

VERSIONS = Path(__file__).with_name("migrations") / "versions"
_REVISION = re.compile(r"^revision\s*(?::\s*str\s*)?=\s*['\"]([^'\"]+)['\"]\s*$", re.M)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]+)?=\s*(?:None|['\"]([^'\"]+)['\"])\s*$", re.M)


@functools.cache
def head_revision(versions: Path = VERSIONS) -> str | None:
    """The single revision no other one revises, or None when the files do not say plainly."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in versions.glob("*.py"):
        if path.name.startswith("__"):
            continue
        text = path.read_text(encoding="utf-8")
        revision, down = _REVISION.findall(text), _DOWN.findall(text)
        if len(revision) != 1 or len(down) != 1:
            return None  # a layout this reader does not know: Alembic's machinery decides
        revisions.add(revision[0])
        if down[0]:
            revised.add(down[0])
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 and revised <= revisions else None
