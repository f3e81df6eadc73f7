-- Headless Neovim end-to-end test of klp-lsp, for Neovim 0.7 to 0.11+.
--
-- Run: nvim --headless -u NONE -i NONE -c 'luafile tests/editors/nvim/e2e.lua' with
--   KLP_NVIM_RUNTIME   client-nvim/ (the shipped configuration under test)
--   KLP_NVIM_CMD       JSON list: the server command
--   KLP_NVIM_SETTINGS  JSON object: klp-lsp settings (binaries, sourceRoot, indexDir, ...)
--   KLP_NVIM_PATCH     the patch file to open
--   KLP_NVIM_FUNCTION  a function name to hover in the patch
--   KLP_NVIM_C_FILE    optional: a C file of sourceRoot defining it (code lens, its command)
--   KLP_NVIM_RESULT    where to write the JSON result
-- Exits with `qall!` after writing the result, or `cquit 1` on failure.

local env = vim.env
local result = { nvim = tostring(vim.version().major) .. '.' .. vim.version().minor .. '.' .. vim.version().patch }

local function finish(ok, err)
  result.ok = ok
  result.error = err
  vim.fn.writefile({ vim.fn.json_encode(result) }, env.KLP_NVIM_RESULT)
  if ok then
    vim.cmd('qall!')
  else
    vim.cmd('cquit 1')
  end
end

local ok, err = pcall(function()
  vim.opt.runtimepath:prepend(env.KLP_NVIM_RUNTIME)
  package.path = env.KLP_NVIM_RUNTIME .. '/lua/?.lua;' .. env.KLP_NVIM_RUNTIME .. '/lua/?/init.lua;' .. package.path
  vim.cmd('filetype on')
  local klp = require('klp_lsp')
  local opts = {
    cmd = vim.fn.json_decode(env.KLP_NVIM_CMD),
    settings = vim.fn.json_decode(env.KLP_NVIM_SETTINGS),
  }

  if vim.lsp.config ~= nil and vim.lsp.enable ~= nil then
    -- Neovim 0.11+: the configuration of client-nvim/nvim-0.11.lua.
    result.route = 'vim.lsp.config'
    vim.lsp.config('klp_lsp', klp.config(opts))
    vim.lsp.enable('klp_lsp')
  else
    -- Neovim 0.7 to 0.10: the configuration of client-nvim/nvim-0.7.lua.
    result.route = vim.lsp.start ~= nil and 'vim.lsp.start' or 'vim.lsp.start_client'
    vim.api.nvim_create_autocmd('FileType', {
      pattern = klp.filetypes,
      callback = function(args)
        klp.start(opts, args.buf)
      end,
    })
  end

  vim.cmd('edit ' .. vim.fn.fnameescape(env.KLP_NVIM_PATCH))
  local buf = vim.api.nvim_get_current_buf()
  result.filetype = vim.bo[buf].filetype

  local client
  local attached = vim.wait(20000, function()
    client = klp.client_for(buf)
    return client ~= nil and client.initialized ~= false
  end, 50)
  if not attached then
    error('klp-lsp did not attach to the patch buffer (filetype ' .. result.filetype .. ')')
  end
  result.client = client.name

  -- The first diagnostics come once the fixture kernel is indexed.
  local got = vim.wait(45000, function()
    return #vim.diagnostic.get(buf) > 0
  end, 100)
  if not got then
    error('no diagnostics from klp-lsp within 45 s; index state: ' .. vim.inspect(klp.index_state))
  end
  result.index_state = klp.index_state.state
  result.diagnostics = {}
  for _, d in ipairs(vim.diagnostic.get(buf)) do
    local lsp = d.user_data and d.user_data.lsp or {}
    table.insert(result.diagnostics, {
      lnum = d.lnum,
      severity = d.severity,
      code = d.code or lsp.code,
      source = d.source,
      message = d.message,
    })
  end

  -- Hover the function name where the patch mentions it.
  local name = env.KLP_NVIM_FUNCTION
  local lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  local line, col
  for i, text in ipairs(lines) do
    local s = text:find(name .. '(', 1, true)
    if s ~= nil then
      line, col = i - 1, s
      break
    end
  end
  if line == nil then
    error(name .. ' does not appear in the patch')
  end
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(buf) },
    position = { line = line, character = col },
  }
  local responses = vim.lsp.buf_request_sync(buf, 'textDocument/hover', params, 10000) or {}
  for _, response in pairs(responses) do
    if response.result and response.result.contents then
      local contents = response.result.contents
      result.hover = type(contents) == 'table' and (contents.value or vim.inspect(contents)) or contents
    end
  end
  if result.hover == nil then
    error('no hover for ' .. name)
  end

  -- A C file: code lenses, resolved, and a click (the client-side command) opens the report.
  if env.KLP_NVIM_C_FILE ~= nil and env.KLP_NVIM_C_FILE ~= '' then
    vim.cmd('edit ' .. vim.fn.fnameescape(env.KLP_NVIM_C_FILE))
    local cbuf = vim.api.nvim_get_current_buf()
    local attached_c = vim.wait(10000, function()
      return klp.client_for(cbuf) ~= nil
    end, 50)
    if not attached_c then
      error('klp-lsp did not attach to the C buffer')
    end
    local lens_params = { textDocument = { uri = vim.uri_from_bufnr(cbuf) } }
    local lenses = {}
    for _, r in pairs(vim.lsp.buf_request_sync(cbuf, 'textDocument/codeLens', lens_params, 10000) or {}) do
      lenses = r.result or lenses
    end
    local wanted
    for _, lens in ipairs(lenses) do
      if vim.tbl_contains(lens.data and lens.data.names or {}, name) then
        wanted = lens
      end
    end
    if wanted == nil then
      error('no code lens for ' .. name .. ' among ' .. #lenses)
    end
    for _, r in pairs(vim.lsp.buf_request_sync(cbuf, 'codeLens/resolve', wanted, 10000) or {}) do
      if r.result and r.result.command then
        result.lens = r.result.command.title
        local command = r.result.command
        local handler = vim.lsp.commands[command.command]
        if handler == nil then
          local c = klp.client_for(cbuf)
          handler = c.commands and c.commands[command.command]
        end
        if handler == nil then
          error('no client-side handler for ' .. command.command)
        end
        handler(command, { client_id = klp.client_for(cbuf).id, bufnr = cbuf })
      end
    end
    local shown = vim.wait(10000, function()
      return vim.fn.bufnr('klp-lsp://report') ~= -1
    end, 50)
    if shown then
      local rbuf = vim.fn.bufnr('klp-lsp://report')
      result.report_first_line = vim.api.nvim_buf_get_lines(rbuf, 0, 1, false)[1]
    end
  end
end)

if ok then
  finish(true, nil)
else
  finish(false, tostring(err))
end
