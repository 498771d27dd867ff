"""What the wire looks like, for assertions shared by the end-to-end tests."""

from __future__ import annotations

import re

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")

# (HTTP status, service error code) of each failure kind (asm-api.md §2).
INVALID = (400, "ASM.01010001")
FORBIDDEN = (403, "ASM.01000002")
NOT_FOUND = (404, "ASM.01010002")
CONFLICT = (409, "ASM.01010003")
