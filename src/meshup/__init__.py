"""meshup: a self-hostable Huawei Cloud ASM mesh-upgrade service."""

__version__ = "0.1.0"
