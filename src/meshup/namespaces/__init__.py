"""The mesh namespace APIs: list a mesh's namespaces, read and change their sidecar injection."""
