"""patch layer; see ARCHITECTURE.md."""
