-- Drives Neovim like a user for tests/test_editors.py: loads the plugin, opens a .txt file, types
-- in insert mode and records what the plugin did, as JSON in $PROMPT_TEST_RESULT. The steps run
-- in a coroutine that yields to Neovim's main loop, so typed keys, autocommands and LSP replies
-- are processed as they are for a user. Assertions are the Python test's.
local uv = vim.uv or vim.loop
local plugin = require("prompt_autocomplete")
local result = {}
local namespace = vim.api.nvim_create_namespace("prompt_autocomplete")

local function finish()
  vim.fn.writefile({ vim.fn.json_encode(result) }, os.getenv("PROMPT_TEST_RESULT"))
  vim.cmd("qall!")
end

local function sleep(ms)
  local co = coroutine.running()
  vim.defer_fn(function()
    local ok, err = coroutine.resume(co)
    if not ok then
      result.error = debug.traceback(co, err)
      finish()
    end
  end, ms)
  coroutine.yield()
end

local function wait_until(what, condition, timeout_ms)
  local deadline = uv.now() + (timeout_ms or 60000)
  while true do
    local ok, value = pcall(condition)
    if ok and value then
      return value
    end
    if uv.now() > deadline then
      error("timed out waiting for " .. what .. (ok and "" or (": " .. tostring(value))))
    end
    sleep(50)
  end
end

local function type_keys(keys)
  vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(keys, true, false, true), "t", false)
end

local function line()
  return vim.api.nvim_get_current_line()
end

local function ghost_marks()
  local marks = vim.api.nvim_buf_get_extmarks(0, namespace, 0, -1, { details = true })
  local texts = {}
  for _, mark in ipairs(marks) do
    for _, chunk in ipairs(mark[4].virt_text or {}) do
      table.insert(texts, chunk[1])
    end
  end
  return texts
end

local function request_status(client)
  local done, status = false, nil
  local request = vim.fn.has("nvim-0.11") == 1 and function(...) return client:request(...) end
    or client.request
  request("promptAutocomplete/status", {}, function(_, answer)
    status, done = answer, true
  end, 0)
  wait_until("the status reply", function() return done end)
  return status
end

local function main()
  plugin.setup({
    cmd = vim.fn.json_decode(os.getenv("PROMPT_TEST_SERVER")),
    -- A busy 2-core machine must not cut decoding short: the test checks behaviour, not speed.
    settings = { timeBudgetMs = 20000 },
  })
  vim.cmd("edit " .. vim.fn.fnameescape(os.getenv("PROMPT_TEST_FILE")))
  result.filetype = vim.bo.filetype
  local client = wait_until("prompt_ls to attach", function()
    return require("prompt_autocomplete.compat").clients(0, "prompt_ls")[1]
  end)
  result.omnifunc = vim.bo.omnifunc
  wait_until("the model", function()
    return request_status(client).state == "ready"
  end, 180000)

  -- The completion menu through omnifunc in a word: the words that finish it.
  type_keys("ia portrait of a wom<C-x><C-o>")
  local items = wait_until("completion items", function()
    local found = vim.fn.complete_info({ "items" }).items
    return #found > 0 and found
  end)
  result.completion_words, result.completion_labels = {}, {}
  for _, item in ipairs(items) do
    table.insert(result.completion_words, item.word)
    table.insert(result.completion_labels, item.abbr)
  end
  type_keys("<C-e>")

  -- After a word the menu offers next phrases (in a word the corpus statistics offer words);
  -- one is picked from it.
  type_keys("<Esc>Sa portrait of a woman <C-x><C-o>")
  local phrases = wait_until("phrase items", function()
    local found = vim.fn.complete_info({ "items" }).items
    -- complete_info keeps the cancelled menu's items until the new menu replaces them
    return #found > 0 and found[1].abbr ~= items[1].abbr and found
  end)
  result.phrase_labels = {}
  local phrase_at
  for position, item in ipairs(phrases) do
    table.insert(result.phrase_labels, item.abbr)
    if phrase_at == nil and item.abbr:find(" ") then
      phrase_at = position
    end
  end
  result.phrase = phrase_at and phrases[phrase_at].abbr
  -- The menu opens on the first item: step down to the phrase, accept it.
  type_keys(string.rep("<C-n>", (phrase_at or 1) - 1) .. "<C-y>")
  result.line_after_menu = wait_until("the phrase inserted", function()
    return vim.fn.pumvisible() == 0 and line() ~= "a portrait of a woman " and line()
  end)

  -- Ghost text while typing, on a fresh line.
  type_keys("<Esc>Sa portrait of a wom")
  result.ghost = wait_until("ghost text", function() return plugin.ghost_text() end)
  result.ghost_marks = ghost_marks()
  result.line_with_ghost = line()

  -- Alternatives: next, then back.
  type_keys("<M-]>")
  result.ghost_next = wait_until("another alternative", function()
    local text = plugin.ghost_text()
    return text ~= nil and text ~= result.ghost and text
  end)
  type_keys("<M-[>")
  wait_until("the first alternative again", function() return plugin.ghost_text() == result.ghost end)

  -- One word, then the rest.
  type_keys("<C-Right>")
  result.line_after_word = wait_until("a word accepted", function()
    return line() ~= result.line_with_ghost and line()
  end)
  result.ghost_after_word = wait_until("ghost text after the word", function() return plugin.ghost_text() end)
  type_keys("<Tab>")
  result.line_after_accept = wait_until("the rest accepted", function()
    return line() ~= result.line_after_word and line()
  end)
  type_keys("<Esc>")
  wait_until("normal mode", function() return vim.api.nvim_get_mode().mode == "n" end)
  result.marks_after_leaving = ghost_marks()

  -- Expansion into a picker (vim.ui.select, answered as a user picking the first).
  vim.cmd("normal! Sa portrait of a woman")
  vim.ui.select = function(choices, _, on_choice)
    result.expansions = choices
    on_choice(choices[1])
  end
  vim.cmd("PromptAutocompleteExpand 2")
  result.line_after_expand = wait_until("the expansion", function()
    return line() ~= "a portrait of a woman" and line()
  end, 120000)

  -- *.prompt files get the filetype "prompt" and the same server.
  vim.cmd("edit " .. vim.fn.fnameescape(vim.fn.fnamemodify(os.getenv("PROMPT_TEST_FILE"), ":h") .. "/scene.prompt"))
  result.prompt_file_filetype = vim.bo.filetype
  result.prompt_file_attached = wait_until("prompt_ls on the .prompt file", function()
    return require("prompt_autocomplete.compat").clients(0, "prompt_ls")[1] ~= nil
  end)
  finish()
end

vim.schedule(function()
  local co = coroutine.create(main)
  local ok, err = coroutine.resume(co)
  if not ok then
    result.error = debug.traceback(co, err)
    finish()
  end
end)
