"""Loopback emulator of the Neptune 3.x service for the unmodified neptune-scale and neptune-query clients."""

from nmig.emulators.neptune3.server import serve_neptune3

__all__ = ["serve_neptune3"]
