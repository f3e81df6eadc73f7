"""index layer; see ARCHITECTURE.md."""
