-- klp-lsp with Neovim 0.11+ (`vim.lsp.config` / `vim.lsp.enable`), no plugin needed.
-- Put client-nvim/ on 'runtimepath' (or copy lua/klp_lsp/ into ~/.config/nvim/lua/), then
-- source this file from init.lua, or copy it there and edit the settings.
local klp = require('klp_lsp')

vim.lsp.config('klp_lsp', klp.config({
  -- cmd = { 'python3', '-m', 'klp_lsp', 'serve' },  -- when klp-lsp is not on PATH
  settings = {
    binaries = {},          -- vmlinux / .ko files or module directories; {} = running kernel
    kernelRelease = '',     -- e.g. '6.1.0-26-amd64'; '' = `uname -r`
    sourceRoot = '',        -- kernel source tree; '' = from DWARF DW_AT_comp_dir
    indexDir = '',          -- '' = $KLP_LSP_INDEX_DIR or ~/.cache/klp-lsp
    compileCheck = false,   -- true: compile the touched objects (needs buildTree)
    buildTree = '',         -- a tree made by `klp-lsp prepare-build`
    severityOverrides = {}, -- e.g. { ['has-clones'] = 'hint', inlined = 'off' }
    inlayHints = true,      -- facts after function names in C files (Neovim 0.10+)
  },
}))
vim.lsp.enable('klp_lsp')
