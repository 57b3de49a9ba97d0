-- prompt_autocomplete: prompt-ls in Neovim 0.7 through 0.11+.
--
--   require("prompt_autocomplete").setup({ cmd = { "prompt-ls" } })
--
-- starts prompt-ls for text, markdown and *.prompt buffers, sets omnifunc (nvim-cmp's LSP
-- source sees the client too), draws ghost text from textDocument/inlineCompletion, and adds
-- :PromptAutocompleteExpand, which offers full expansions of the current line in a picker.
local compat = require("prompt_autocomplete.compat")
local ghost = require("prompt_autocomplete.ghost")

local M = {}

M.name = "prompt_ls"
M.expand_command = "promptAutocomplete.expand"

M.defaults = {
  cmd = { "prompt-ls" },
  filetypes = { "text", "markdown", "prompt" },
  -- Files given the filetype "prompt" (Neovim gives *.prompt none; prompt-ls serves "prompt").
  prompt_patterns = { "*.prompt" },
  -- The server's settings (section promptAutocomplete): sent at initialize and on request.
  settings = {},
  ghost_text = true,
  debounce_ms = 75,
  expansions = 4,
  -- Insert-mode keys (false: no mapping). Without ghost text shown a key does what it did.
  keys = {
    accept = "<Tab>",
    accept_word = "<C-Right>",
    next = "<M-]>",
    previous = "<M-[>",
  },
  capabilities = nil, -- merged over Neovim's (and nvim-cmp's, when cmp_nvim_lsp is installed)
  on_attach = nil, -- function(client, bufnr), after the plugin's own
}

M.options = vim.deepcopy(M.defaults)

local function client_of(bufnr)
  return compat.clients(bufnr, M.name)[1]
end

local function capabilities(options)
  local result = vim.lsp.protocol.make_client_capabilities()
  local has_cmp, cmp_lsp = pcall(require, "cmp_nvim_lsp")
  if has_cmp then
    result = vim.tbl_deep_extend("force", result, cmp_lsp.default_capabilities())
  end
  if options.ghost_text then
    -- Declared so the server leaves the ghost's next word out of the menu (menuSkipsGhost).
    result.textDocument.inlineCompletion = { dynamicRegistration = false }
  end
  return vim.tbl_deep_extend("force", result, options.capabilities or {})
end

local function termcodes(keys)
  return vim.api.nvim_replace_termcodes(keys, true, false, true)
end

--- A buffer-local insert-mode key that runs `action`, or types the key when it returns false.
local function map_key(bufnr, key, action)
  if not key then
    return
  end
  vim.keymap.set("i", key, function()
    if not action() then
      vim.api.nvim_feedkeys(termcodes(key), "n", false)
    end
  end, { buffer = bufnr, desc = "prompt_autocomplete" })
end

--- After a menu item is accepted, insert the rest of its edit when Neovim inserted less.
--- Neovim 0.11 inserts only the first word of a plain-text edit ("woman" of "woman with long
--- hair") and applies the rest only for snippets; earlier versions insert it all (no-op).
local function complete_phrase(client)
  local reason = (vim.v.event or {}).reason
  if reason ~= nil and reason ~= "accept" then
    return
  end
  local completed = vim.v.completed_item
  local user_data = type(completed) == "table" and completed.user_data
  local lsp_data = type(user_data) == "table" and user_data.nvim and user_data.nvim.lsp
  local item = lsp_data and lsp_data.completion_item
  if not item or (lsp_data.client_id ~= nil and lsp_data.client_id ~= client.id) then
    return
  end
  local new_text = item.textEdit and item.textEdit.newText
  local word = completed.word
  if type(new_text) ~= "string" or #new_text <= #word or new_text:sub(1, #word) ~= word then
    return
  end
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  local line = vim.api.nvim_get_current_line()
  if line:sub(col - #word + 1, col) ~= word then
    return
  end
  local rest = new_text:sub(#word + 1)
  vim.api.nvim_buf_set_text(0, row - 1, col, row - 1, col, { rest })
  vim.api.nvim_win_set_cursor(0, { row, col + #rest })
end

local function attach(client, bufnr)
  local options = M.options
  if vim.bo[bufnr].omnifunc == "" then
    vim.bo[bufnr].omnifunc = "v:lua.vim.lsp.omnifunc"
  end
  vim.api.nvim_create_autocmd("CompleteDone", {
    group = vim.api.nvim_create_augroup("prompt_autocomplete_menu_" .. bufnr, { clear = true }),
    buffer = bufnr,
    callback = function()
      complete_phrase(client)
    end,
  })
  if options.ghost_text then
    local group = vim.api.nvim_create_augroup("prompt_autocomplete_buffer_" .. bufnr, { clear = true })
    vim.api.nvim_create_autocmd("TextChangedI", {
      group = group,
      buffer = bufnr,
      callback = function()
        ghost.on_text_changed(client, bufnr, options.debounce_ms)
      end,
    })
    vim.api.nvim_create_autocmd("CursorMovedI", {
      group = group,
      buffer = bufnr,
      callback = function()
        ghost.on_cursor_moved(bufnr)
      end,
    })
    vim.api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, {
      group = group,
      buffer = bufnr,
      callback = function()
        ghost.clear(bufnr)
      end,
    })
    map_key(bufnr, options.keys.accept, function()
      return ghost.accept(bufnr, "all")
    end)
    map_key(bufnr, options.keys.accept_word, function()
      return ghost.accept(bufnr, "word")
    end)
    map_key(bufnr, options.keys.next, function()
      ghost.cycle(client, bufnr, 1)
      return true
    end)
    map_key(bufnr, options.keys.previous, function()
      ghost.cycle(client, bufnr, -1)
      return true
    end)
  end
  if options.on_attach then
    options.on_attach(client, bufnr)
  end
end

local function client_config(options)
  -- An empty Lua table would be sent as a JSON array, which the server rejects.
  local settings = next(options.settings) and options.settings or vim.empty_dict()
  return {
    name = M.name,
    cmd = options.cmd,
    root_dir = vim.fn.getcwd(),
    init_options = settings,
    settings = { promptAutocomplete = settings },
    capabilities = capabilities(options),
    on_attach = attach,
  }
end

--- Replace line `row` (0-based) of `bufnr` with `choice`, if it still reads `expected`.
local function replace_line(bufnr, row, expected, choice)
  if vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] ~= expected then
    vim.notify("prompt_autocomplete: the line changed; expansion not inserted", vim.log.levels.WARN)
    return
  end
  vim.api.nvim_buf_set_lines(bufnr, row, row + 1, false, vim.split(choice, "\n", { plain = true }))
end

--- Offer full expansions of the current line (promptAutocomplete.expand) in vim.ui.select.
function M.expand(count)
  local bufnr = vim.api.nvim_get_current_buf()
  local client = client_of(bufnr)
  if client == nil then
    vim.notify("prompt_autocomplete: prompt-ls is not attached to this buffer", vim.log.levels.ERROR)
    return
  end
  local row = vim.api.nvim_win_get_cursor(0)[1] - 1
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
  local params = { command = M.expand_command, arguments = { line, count or M.options.expansions } }
  compat.request(client, "workspace/executeCommand", params, function(err, result)
    if err ~= nil then
      vim.notify("prompt_autocomplete: expand failed: " .. tostring(err.message), vim.log.levels.ERROR)
      return
    end
    if result == nil or #result == 0 then
      vim.notify("prompt_autocomplete: no expansion (is the model still loading?)", vim.log.levels.WARN)
      return
    end
    vim.ui.select(result, { prompt = "Expand prompt" }, function(choice)
      if choice ~= nil and vim.api.nvim_buf_is_valid(bufnr) then
        replace_line(bufnr, row, line, choice)
      end
    end)
  end, bufnr)
end

--- Start prompt-ls for the configured filetypes; see M.defaults for the options.
function M.setup(options)
  M.options = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), options or {})
  vim.cmd("highlight default link " .. ghost.highlight .. " Comment")
  local group = vim.api.nvim_create_augroup("prompt_autocomplete", { clear = true })
  vim.api.nvim_create_autocmd({ "BufRead", "BufNewFile" }, {
    group = group,
    pattern = M.options.prompt_patterns,
    command = "setfiletype prompt",
  })
  vim.api.nvim_create_user_command("PromptAutocompleteExpand", function(command)
    M.expand(tonumber(command.args))
  end, { nargs = "?", desc = "Offer full expansions of the current line" })

  local config = client_config(M.options)
  if compat.has_0_11 then
    config.filetypes = M.options.filetypes
    vim.lsp.config(M.name, config)
    vim.lsp.enable(M.name)
    return
  end
  local function start(bufnr)
    compat.start(config, bufnr)
  end
  vim.api.nvim_create_autocmd("FileType", {
    group = group,
    pattern = M.options.filetypes,
    callback = function(event)
      start(event.buf)
    end,
  })
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) and vim.tbl_contains(M.options.filetypes, vim.bo[bufnr].filetype) then
      start(bufnr)
    end
  end
end

-- For statuslines and tests: the ghost text shown in a buffer, or nil.
M.ghost_text = ghost.text

return M
