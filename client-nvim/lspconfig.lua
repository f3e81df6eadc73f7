-- klp-lsp through nvim-lspconfig (https://github.com/neovim/nvim-lspconfig), which does not
-- ship a klp_lsp definition: this file adds one to `lspconfig.configs` and sets it up.
-- Put client-nvim/ on 'runtimepath' (or copy lua/klp_lsp/ into ~/.config/nvim/lua/).
local klp = require('klp_lsp')
local lspconfig = require('lspconfig')
local configs = require('lspconfig.configs')
local util = require('lspconfig.util')

if not configs.klp_lsp then
  local base = klp.config()
  configs.klp_lsp = {
    default_config = {
      cmd = base.cmd,
      filetypes = base.filetypes,
      root_dir = util.root_pattern(unpack(klp.root_markers)),
      single_file_support = true,
      handlers = base.handlers,
      on_attach = base.on_attach, -- code lenses and inlay hints
    },
    docs = {
      description = 'klp-lsp: compiled ABI facts of a built Linux kernel for live-patch authors.',
    },
  }
end

-- Code lenses and code actions run these on the client side (they show the server's answer).
for name, fn in pairs(klp.commands) do
  vim.lsp.commands[name] = vim.lsp.commands[name] or fn
end

local settings = {
  binaries = {},          -- vmlinux / .ko files or module directories; {} = running kernel
  kernelRelease = '',     -- e.g. '6.1.0-26-amd64'; '' = `uname -r`
  sourceRoot = '',        -- kernel source tree; '' = from DWARF DW_AT_comp_dir
  indexDir = '',          -- '' = $KLP_LSP_INDEX_DIR or ~/.cache/klp-lsp
  compileCheck = false,   -- true: compile the touched objects (needs buildTree)
  buildTree = '',         -- a tree made by `klp-lsp prepare-build`
  severityOverrides = {}, -- e.g. { ['has-clones'] = 'hint', inlined = 'off' }
  inlayHints = true,      -- facts after function names in C files (Neovim 0.10+)
}

lspconfig.klp_lsp.setup({
  -- cmd = { 'python3', '-m', 'klp_lsp', 'serve' },  -- when klp-lsp is not on PATH
  init_options = settings,
  settings = { ['klp-lsp'] = settings },
})
