"""Mesh versions, canary upgrade paths and Kubernetes compatibility (asm-api.md §7).

The facts live in ``meshup/data/versions.yaml`` so that a new release is a data change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)-r(\d+)$")


@dataclass(frozen=True, slots=True, order=True)
class MeshVersion:
    major: int
    minor: int
    patch: int
    release: int

    @property
    def line(self) -> str:
        return f"{self.major}.{self.minor}"

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}-r{self.release}"


def parse_version(text: str) -> MeshVersion | None:
    match = _VERSION.match(text)
    if match is None:
        return None
    major, minor, patch, release = (int(part) for part in match.groups())
    return MeshVersion(major, minor, patch, release)


@dataclass(frozen=True, slots=True)
class VersionCatalogue:
    versions: tuple[str, ...]
    line_hops: dict[str, tuple[str, ...]]
    kubernetes: dict[str, tuple[str, ...]]

    def is_supported(self, version: str) -> bool:
        return version in self.versions

    def upgrade_refusal(self, current: str, target: str) -> str | None:
        """Why ``current`` cannot be canary-upgraded to ``target`` in one task, or None if it can."""
        if not self.is_supported(target):
            return f"target version {target} is not supported (supported: {', '.join(self.versions)})"
        source, goal = parse_version(current), parse_version(target)
        if source is None or goal is None:
            return f"cannot upgrade from {current}"
        if goal <= source:
            return f"{target} is not newer than the current version {current}"
        if goal.line != source.line and goal.line not in self.line_hops.get(source.line, ()):
            allowed = ", ".join(self.line_hops.get(source.line, ())) or "none"
            return (
                f"cannot upgrade from line {source.line} to line {goal.line} in one task "
                f"(next lines allowed from {source.line}: {allowed})"
            )
        return None

    def supports_kubernetes(self, mesh_version: str, kubernetes_version: str) -> bool:
        parsed = parse_version(mesh_version)
        if parsed is None:
            return False
        major_minor = ".".join(kubernetes_version.lstrip("v").split(".")[:2])
        return major_minor in self.kubernetes.get(parsed.line, ())

    def kubernetes_for(self, mesh_version: str) -> tuple[str, ...]:
        parsed = parse_version(mesh_version)
        return self.kubernetes.get(parsed.line, ()) if parsed else ()


@cache
def catalogue() -> VersionCatalogue:
    text = resources.files("meshup.data").joinpath("versions.yaml").read_text()
    data = yaml.safe_load(text)
    return VersionCatalogue(
        versions=tuple(str(v) for v in data["versions"]),
        line_hops={str(k): tuple(str(x) for x in v) for k, v in data["lineHops"].items()},
        kubernetes={str(k): tuple(str(x) for x in v) for k, v in data["kubernetes"].items()},
    )
