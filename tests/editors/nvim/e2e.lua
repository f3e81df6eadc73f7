-- Headless Neovim end-to-end test of klp-lsp, for Neovim 0.7 to 0.11+.
--
-- Run: nvim --headless -u NONE -i NONE -c 'luafile tests/editors/nvim/e2e.lua' with
--   KLP_NVIM_RUNTIME   client-nvim/ (the shipped configuration under test)
--   KLP_NVIM_CMD       JSON list: the server command
--   KLP_NVIM_SETTINGS  JSON object: klp-lsp settings (binaries, sourceRoot, indexDir, ...)
--   KLP_NVIM_PATCH     the patch file to open
--   KLP_NVIM_FUNCTION  a function name to hover in the patch
--   KLP_NVIM_PATCHES   optional: JSON list of patch files, each opened in turn for its code
--                      lenses (as the shipped configuration shows them), a hover at the start of
--                      its first diagnostic, its document symbols and a dump of its virtual text
--   KLP_NVIM_C_FILE    optional: a C file of sourceRoot defining it (code lens, its command,
--                      inlay hints on 0.10+)
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

--- The virtual text of every line of a buffer (code lenses, diagnostics), from all namespaces.
local function virtual_text(buf)
  local out = {}
  -- Anonymous namespaces (0.7 draws diagnostics in one) are not listed: try every id in use.
  local last = 0
  for _, id in pairs(vim.api.nvim_get_namespaces()) do
    last = math.max(last, id)
  end
  for ns = 1, last + 100 do
    local got, marks = pcall(vim.api.nvim_buf_get_extmarks, buf, ns, 0, -1, { details = true })
    for _, mark in ipairs(got and marks or {}) do
      local details = mark[4] or {}
      if details.virt_text then
        local text = {}
        for _, chunk in ipairs(details.virt_text) do
          table.insert(text, chunk[1])
        end
        out[mark[2] + 1] = (out[mark[2] + 1] or '') .. table.concat(text)
      end
    end
  end
  return out
end

--- A text dump of a buffer as Neovim shows it: each line, then its virtual text after `  ⟵ `.
local function screen_dump(buf)
  local virt = virtual_text(buf)
  local lines = {}
  for i, text in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, false)) do
    local shown = string.format('%3d %s', i, text)
    if virt[i] ~= nil then
      shown = shown .. '    ' .. virt[i]
    end
    table.insert(lines, shown)
  end
  return lines
end

local function flat_symbols(symbols, container, out)
  for _, s in ipairs(symbols or {}) do
    table.insert(out, { kind = s.kind, name = s.name, container = container or s.containerName or vim.NIL })
    flat_symbols(s.children, s.name, out)
  end
  return out
end

--- Open a patch and read what klp-lsp shows on it.
local function inspect_patch(klp, file)
  vim.cmd('edit ' .. vim.fn.fnameescape(file))
  local buf = vim.api.nvim_get_current_buf()
  local out = {}
  if not vim.wait(20000, function()
    return klp.client_for(buf) ~= nil
  end, 50) then
    error('klp-lsp did not attach to ' .. file)
  end
  if not vim.wait(45000, function()
    return #vim.diagnostic.get(buf) > 0
  end, 100) then
    error('no diagnostics on ' .. file)
  end
  -- The shipped on_attach asks for lenses on its events; the summary lens comes with the check.
  local function titles()
    local found = {}
    for _, lens in ipairs(vim.lsp.codelens.get(buf) or {}) do
      if lens.command and lens.command.title then
        table.insert(found, { line = lens.range.start.line, title = lens.command.title })
      end
    end
    table.sort(found, function(a, b)
      return a.line < b.line
    end)
    return found
  end
  if not vim.wait(20000, function()
    local t = titles()
    return #t > 0 and t[1].title:find('changed function', 1, true) ~= nil
  end, 100) then
    error('no summary code lens on ' .. file .. ': ' .. vim.inspect(titles()))
  end
  out.lenses = titles()
  -- The lenses are drawn as virtual text at the end of their lines.
  if not vim.wait(5000, function()
    return virtual_text(buf)[1] ~= nil
  end, 50) then
    error('the code lenses of ' .. file .. ' are not drawn')
  end

  local diagnostics = vim.diagnostic.get(buf)
  table.sort(diagnostics, function(a, b)
    return a.lnum < b.lnum or (a.lnum == b.lnum and a.severity < b.severity)
  end)
  local first = diagnostics[1]
  local lsp = first.user_data and first.user_data.lsp or {}
  out.diagnostic = { lnum = first.lnum, col = first.col, code = first.code or lsp.code, severity = first.severity }
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(buf) },
    position = { line = first.lnum, character = first.col },
  }
  for _, r in pairs(vim.lsp.buf_request_sync(buf, 'textDocument/hover', params, 10000) or {}) do
    if r.result and r.result.contents then
      out.hover = r.result.contents.value or vim.inspect(r.result.contents)
    end
  end
  if out.hover == nil then
    error('no hover at the start of the first diagnostic of ' .. file)
  end

  local symbol_params = { textDocument = { uri = vim.uri_from_bufnr(buf) } }
  for _, r in pairs(vim.lsp.buf_request_sync(buf, 'textDocument/documentSymbol', symbol_params, 10000) or {}) do
    out.symbols = flat_symbols(r.result, nil, {})
  end
  out.screen = screen_dump(buf)
  return out
end

local ok, err = pcall(function()
  vim.opt.runtimepath:prepend(env.KLP_NVIM_RUNTIME)
  package.path = env.KLP_NVIM_RUNTIME .. '/lua/?.lua;' .. env.KLP_NVIM_RUNTIME .. '/lua/?/init.lua;' .. package.path
  vim.cmd('filetype on')
  -- Diagnostics as virtual text on both versions (0.11 turns it off by default), for the dump.
  vim.diagnostic.config({ virtual_text = true })
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
  result.status = klp.status()
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

  -- Each patch: the lenses the shipped configuration shows, a hover at the start of a diagnostic,
  -- the outline, and what the screen shows besides the text (virtual text), for the README.
  result.patches = {}
  for _, file in ipairs(env.KLP_NVIM_PATCHES and vim.fn.json_decode(env.KLP_NVIM_PATCHES) or {}) do
    result.patches[vim.fn.fnamemodify(file, ':t')] = inspect_patch(klp, file)
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

    -- Inlay hints (Neovim 0.10+): enabled by the shipped on_attach, drawn by Neovim itself.
    if vim.lsp.inlay_hint ~= nil and vim.lsp.inlay_hint.get ~= nil then
      vim.cmd('buffer ' .. cbuf)
      local hints = {}
      vim.wait(20000, function()
        hints = {}
        for _, item in ipairs(vim.lsp.inlay_hint.get({ bufnr = cbuf })) do
          local label = item.inlay_hint.label
          if type(label) == 'table' then
            local parts = {}
            for _, part in ipairs(label) do
              table.insert(parts, part.value)
            end
            label = table.concat(parts)
          end
          hints[tostring(item.inlay_hint.position.line + 1)] = label
        end
        return next(hints) ~= nil
      end, 100)
      result.inlay_hints = hints
      result.inlay_hints_enabled = vim.lsp.inlay_hint.is_enabled({ bufnr = cbuf })
    end
  end
  result.messages = vim.fn.execute('messages')
end)

if ok then
  finish(true, nil)
else
  finish(false, tostring(err))
end
