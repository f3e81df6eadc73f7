"""binary layer; see ARCHITECTURE.md."""
