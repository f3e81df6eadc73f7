-- klp-lsp for Neovim 0.7+: the server definition shared by the ready configurations in this
-- directory, the client side of klp-lsp's commands, and the index state for a statusline.
--
--   require('klp_lsp').config(opts)  -> a table for vim.lsp.start / vim.lsp.config / lspconfig
--   require('klp_lsp').start(opts)   -> start or reuse the client for the current buffer
--   require('klp_lsp').status()      -> "klp-lsp: indexing vmlinux 40%" (for a statusline)
--   require('klp_lsp').on_attach     -> code lenses (all versions) and inlay hints (0.10+)
local M = {}

M.name = 'klp_lsp'
-- Neovim calls a `git format-patch` mail (a .patch starting with "From <sha>") gitsendemail.
M.filetypes = { 'c', 'diff', 'gitsendemail' }
M.root_markers = { 'MAINTAINERS', 'Kbuild', '.git' }

-- The last `klp-lsp/indexState` notification.
M.index_state = { state = 'none' }

local function has(feature)
  return vim.fn.has(feature) == 1
end

--- The directory of a buffer's nearest root marker, else the current directory.
function M.root_dir(bufnr)
  local name = vim.api.nvim_buf_get_name(bufnr or 0)
  local dir = name ~= '' and vim.fn.fnamemodify(name, ':p:h') or vim.fn.getcwd()
  for _, marker in ipairs(M.root_markers) do
    local file = vim.fn.findfile(marker, dir .. ';')
    if file ~= '' then
      return vim.fn.fnamemodify(file, ':p:h')
    end
    local directory = vim.fn.finddir(marker, dir .. ';')
    if directory ~= '' then
      -- ':p' ends a directory with '/', so ':h' drops only that slash.
      return vim.fn.fnamemodify(directory, ':p:h:h')
    end
  end
  return vim.fn.getcwd()
end

--- A text for statuslines, as VS Code's status bar says it: `klp-lsp: indexing vmlinux 40%`,
--- `klp-lsp: indexing kernel/sched/rt.c` (a file's compile unit indexed on demand), `klp-lsp:
--- ready`; empty before the server said anything.
function M.status()
  local s = M.index_state
  if s.state == 'building' then
    local percent = s.percent ~= nil and s.percent ~= vim.NIL and string.format(' %d%%', s.percent) or ''
    local object = (s.object ~= nil and s.object ~= vim.NIL) and s.object or 'kernel'
    return 'klp-lsp: indexing ' .. object .. percent
  elseif s.state == 'ready' then
    return 'klp-lsp: ready'
  elseif s.state == 'error' then
    return 'klp-lsp: ' .. (s.message or 'index error')
  end
  return ''
end

-- Show Markdown returned by a command in a scratch buffer in a split.
local function show_markdown(text, title)
  if type(text) == 'table' then
    text = text.content or text.markdown or text.value or vim.inspect(text)
  end
  if type(text) ~= 'string' or text == '' then
    return
  end
  vim.cmd('botright new')
  local buf = vim.api.nvim_get_current_buf()
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, vim.split(text, '\n', { plain = true }))
  vim.bo[buf].buftype = 'nofile'
  vim.bo[buf].bufhidden = 'wipe'
  vim.bo[buf].filetype = title == 'skeleton' and 'c' or 'markdown'
  pcall(vim.api.nvim_buf_set_name, buf, 'klp-lsp://' .. title)
end

local function execute(client, command, args, title)
  local params = { command = command, arguments = args }
  local function handler(err, result)
    if err then
      vim.notify('klp-lsp: ' .. command .. ': ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
      return
    end
    show_markdown(result, title)
  end
  -- Client methods take `:` from 0.11 on; the `.` form is deprecated there.
  if has('nvim-0.11') then
    client:request('workspace/executeCommand', params, handler)
  else
    client.request('workspace/executeCommand', params, handler)
  end
end

local function client_for(bufnr)
  -- `buf_get_clients` is deprecated from 0.10 on, where `get_clients` replaces it.
  local clients = vim.lsp.get_clients ~= nil and vim.lsp.get_clients({ bufnr = bufnr })
    or vim.lsp.buf_get_clients(bufnr)
  for _, client in pairs(clients) do
    if client.name == M.name then
      return client
    end
  end
  return nil
end

--- Client-side handlers of the commands a code lens or code action runs: they ask the server
--- and show the returned text (the server never writes files).
M.commands = {
  ['klp-lsp.showFunctionReport'] = function(command, ctx)
    local client = vim.lsp.get_client_by_id(ctx.client_id)
    execute(client, command.command, command.arguments, 'report')
  end,
  ['klp-lsp.showReplaceSet'] = function(command, ctx)
    local client = vim.lsp.get_client_by_id(ctx.client_id)
    execute(client, command.command, command.arguments, 'replace-set')
  end,
  ['klp-lsp.generateSkeleton'] = function(command, ctx)
    local client = vim.lsp.get_client_by_id(ctx.client_id)
    execute(client, command.command, command.arguments, 'skeleton')
  end,
}

-- Buffers whose code lenses klp-lsp keeps fresh.
local lens_buffers = {}

--- Ask for a buffer's code lenses again (they are drawn at the end of their lines).
function M.refresh_lenses(bufnr)
  if not vim.api.nvim_buf_is_loaded(bufnr) then
    lens_buffers[bufnr] = nil
    return
  end
  if has('nvim-0.10') then
    vim.lsp.codelens.refresh({ bufnr = bufnr })
  elseif bufnr == vim.api.nvim_get_current_buf() then
    -- Before 0.10, refresh() asks for the current buffer only.
    vim.lsp.codelens.refresh()
  end
end

--- Code lenses and inlay hints for a buffer klp-lsp attached to. Neovim asks for code lenses only
--- when told: on entering the buffer, after an edit, a save, a pause of the cursor, and when
--- klp-lsp publishes diagnostics (a patch's lenses come from the same check). Inlay hints
--- (0.10+) are Neovim's own once enabled for the buffer.
function M.on_attach(client, bufnr)
  local caps = client.server_capabilities or client.resolved_capabilities or {}
  if caps.codeLensProvider and not lens_buffers[bufnr] then
    lens_buffers[bufnr] = true
    local group = vim.api.nvim_create_augroup('klp_lsp_codelens_' .. bufnr, { clear = true })
    vim.api.nvim_create_autocmd({ 'BufEnter', 'InsertLeave', 'BufWritePost', 'CursorHold', 'DiagnosticChanged' }, {
      group = group,
      buffer = bufnr,
      callback = function()
        M.refresh_lenses(bufnr)
      end,
    })
    M.refresh_lenses(bufnr)
  end
  if caps.inlayHintProvider and vim.lsp.inlay_hint ~= nil and vim.lsp.inlay_hint.enable ~= nil then
    vim.lsp.inlay_hint.enable(true, { bufnr = bufnr })
  end
end

M.handlers = {
  ['klp-lsp/indexState'] = function(_, params)
    M.index_state = params or { state = 'none' }
    if M.index_state.state == 'error' and M.index_state.message then
      vim.notify('klp-lsp: ' .. M.index_state.message, vim.log.levels.WARN)
    end
    if M.index_state.state == 'ready' then
      -- Lenses asked for while indexing said so; ask again now.
      for bufnr in pairs(lens_buffers) do
        M.refresh_lenses(bufnr)
      end
    end
    vim.cmd('redrawstatus')
  end,
}

--- The server definition. `opts.settings` are klp-lsp's settings (see docs/editors.md):
--- binaries, kernelRelease, sourceRoot, indexDir, severityOverrides, inlayHints, compileCheck,
--- buildTree.
--- `opts.on_attach` runs after klp-lsp's own (code lenses, inlay hints).
function M.config(opts)
  opts = opts or {}
  local settings = opts.settings or {}
  local user_on_attach = opts.on_attach
  return {
    name = M.name,
    cmd = opts.cmd or { 'klp-lsp', 'serve' },
    filetypes = M.filetypes,
    root_markers = M.root_markers,
    init_options = settings,
    settings = { ['klp-lsp'] = settings },
    handlers = vim.tbl_extend('force', M.handlers, opts.handlers or {}),
    commands = M.commands,
    on_attach = function(client, bufnr)
      M.on_attach(client, bufnr)
      if user_on_attach then
        user_on_attach(client, bufnr)
      end
    end,
  }
end

--- Start the client for the current buffer (or reuse it): Neovim 0.7 to 0.10.
function M.start(opts, bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local config = M.config(opts)
  config.root_dir = (opts and opts.root_dir) or M.root_dir(bufnr)
  -- Client-side commands are a global table before 0.10's per-client `commands`.
  for name, fn in pairs(M.commands) do
    vim.lsp.commands[name] = vim.lsp.commands[name] or fn
  end
  if vim.lsp.start ~= nil then
    return vim.lsp.start(config, { bufnr = bufnr })
  end
  -- Neovim 0.7: one client per root directory, attached to each buffer.
  M._clients = M._clients or {}
  local id = M._clients[config.root_dir]
  if id == nil or vim.lsp.get_client_by_id(id) == nil then
    id = vim.lsp.start_client(config)
    M._clients[config.root_dir] = id
  end
  if id ~= nil then
    vim.lsp.buf_attach_client(bufnr, id)
  end
  return id
end

M.client_for = client_for
M.has = has

return M
