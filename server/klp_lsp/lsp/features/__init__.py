"""lsp/features layer; see ARCHITECTURE.md."""
