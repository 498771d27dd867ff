"""What the namespace APIs read and change. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MeshNamespaces:
    """``ListNamespaces``: every namespace of the mesh's clusters, sorted, each name once."""

    mesh_id: str
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SidecarInjection:
    """The injection of one cluster of a mesh: which namespaces inject the mesh's sidecars, and
    for every namespace of the cluster whether it does (``enabled``/``disabled``)."""

    cluster_id: str
    injected: tuple[str, ...]
    namespaces: dict[str, bool]
    restart: bool = False  # echoes the request; a GET answers False (the flag is not kept)


@dataclass(frozen=True, slots=True)
class InjectionChange:
    """``UpdateSidecarInjection``, parsed: the namespaces that inject from now on (all others of
    the cluster stop), in one cluster or (``cluster_id`` None) in every cluster of the mesh."""

    cluster_id: str | None
    inject: tuple[str, ...]
    restart: bool
