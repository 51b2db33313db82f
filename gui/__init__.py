"""Heirloom desktop GUI (PySide6) over the engine package."""
