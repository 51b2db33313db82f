"""Heirloom engine: headless restoration of old photos (pure Python + PyTorch, never Qt)."""

__version__ = "0.1.0"
