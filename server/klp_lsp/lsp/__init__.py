"""lsp layer; see ARCHITECTURE.md."""
