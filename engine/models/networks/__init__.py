"""Our own implementations of the official BOPBtL networks (state-dict compatible)."""
