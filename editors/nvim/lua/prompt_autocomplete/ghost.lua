-- Ghost text: textDocument/inlineCompletion drawn as virtual text while typing in insert mode.
--
-- Neovim before 0.12 has no UI for inline completion, so this module asks for it after a short
-- pause in typing, draws the best item after the cursor in the namespace "prompt_autocomplete",
-- and accepts all of it or one word on a key. Typing the characters it shows keeps it (without
-- asking the server again), as does accepting one word of it.
local compat = require("prompt_autocomplete.compat")

local M = {}

M.namespace = vim.api.nvim_create_namespace("prompt_autocomplete")
M.highlight = "PromptAutocompleteGhost"

local TRIGGER_INVOKED = 1
local TRIGGER_AUTOMATIC = 2

-- Per buffer: the ghost shown and what it was asked for.
--   row, col    cursor (0-based row, byte column) the suggestions start at
--   before      the line's text before the cursor; after: the text after it
--   texts       suffixes to insert at the cursor, best first; index: the one shown
--   tick        b:changedtick when drawn; invoked: alternatives were already asked for
local shown = {}
local timers = {}
local pending = {} -- bufnr -> { client = ..., id = ... } of the request in flight

local function cursor()
  local position = vim.api.nvim_win_get_cursor(0)
  return position[1] - 1, position[2]
end

local function line_at(bufnr, row)
  return vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
end

local function draw(bufnr)
  vim.api.nvim_buf_clear_namespace(bufnr, M.namespace, 0, -1)
  local state = shown[bufnr]
  if state == nil then
    return
  end
  local inline = compat.has_0_10
  if not inline and state.after ~= "" then
    return -- before 0.10 virtual text cannot sit between characters without hiding them
  end
  vim.api.nvim_buf_set_extmark(bufnr, M.namespace, state.row, state.col, {
    virt_text = { { state.texts[state.index], M.highlight } },
    virt_text_pos = inline and "inline" or "overlay",
    hl_mode = "combine",
  })
end

--- The ghost text shown in a buffer, or nil.
function M.text(bufnr)
  local state = shown[bufnr or vim.api.nvim_get_current_buf()]
  return state and state.texts[state.index] or nil
end

local function cancel_pending(bufnr)
  local request = pending[bufnr]
  pending[bufnr] = nil
  if request ~= nil then
    compat.cancel_request(request.client, request.id)
  end
end

function M.clear(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  shown[bufnr] = nil
  cancel_pending(bufnr)
  if vim.api.nvim_buf_is_valid(bufnr) then
    vim.api.nvim_buf_clear_namespace(bufnr, M.namespace, 0, -1)
  end
end

--- What each item would add at the cursor: the items that replace only text typed before it.
local function suffixes(items, line, row, col, encoding)
  local texts, seen = {}, {}
  for _, item in ipairs(items) do
    local insert = item.insertText
    if type(insert) == "table" then
      insert = insert.value
    end
    local start, finish = col, col
    if item.range ~= nil then
      local range = item.range
      if range.start.line ~= row or range["end"].line ~= row then
        insert = nil
      else
        start = compat.byte_col(line, range.start.character, encoding)
        finish = compat.byte_col(line, range["end"].character, encoding)
      end
    end
    if type(insert) == "string" and start <= col and finish == col then
      local typed = line:sub(start + 1, col)
      if insert:sub(1, #typed) == typed then
        local text = vim.split(insert:sub(#typed + 1), "\n", { plain = true })[1]
        if text ~= "" and not seen[text] then
          seen[text] = true
          table.insert(texts, text)
        end
      end
    end
  end
  return texts
end

local function result_items(result)
  if result == nil then
    return {}
  end
  return result.items or result -- InlineCompletionList or InlineCompletionItem[]
end

--- Ask the server for ghost text at the cursor; `on_done(texts)` gets what it found.
local function ask(client, bufnr, trigger_kind, on_done)
  cancel_pending(bufnr)
  local row, col = cursor()
  local tick = vim.api.nvim_buf_get_changedtick(bufnr)
  local params = compat.position_params(client)
  params.context = { triggerKind = trigger_kind }
  local ok, id = compat.request(client, "textDocument/inlineCompletion", params, function(err, result)
    pending[bufnr] = nil
    if err ~= nil or not vim.api.nvim_buf_is_valid(bufnr) then
      return
    end
    local now_row, now_col = cursor()
    if vim.api.nvim_get_current_buf() ~= bufnr
      or vim.api.nvim_buf_get_changedtick(bufnr) ~= tick
      or now_row ~= row or now_col ~= col
      or not vim.startswith(vim.api.nvim_get_mode().mode, "i")
    then
      return -- stale: the user moved on while the server worked
    end
    local line = line_at(bufnr, row)
    on_done(suffixes(result_items(result), line, row, col, client.offset_encoding), line, row, col)
  end, bufnr)
  if ok and id ~= nil then
    pending[bufnr] = { client = client, id = id }
  end
end

local function show(bufnr, texts, line, row, col, invoked)
  if #texts == 0 then
    M.clear(bufnr)
    return
  end
  shown[bufnr] = {
    row = row,
    col = col,
    before = line:sub(1, col),
    after = line:sub(col + 1),
    texts = texts,
    index = 1,
    tick = vim.api.nvim_buf_get_changedtick(bufnr),
    invoked = invoked,
  }
  draw(bufnr)
end

--- Request ghost text for the cursor now (the debounce timer calls this).
function M.request(client, bufnr)
  ask(client, bufnr, TRIGGER_AUTOMATIC, function(texts, line, row, col)
    show(bufnr, texts, line, row, col, false)
  end)
end

--- After an edit: keep the ghost if the user typed what it shows, else ask again after a pause.
function M.on_text_changed(client, bufnr, debounce_ms)
  local state = shown[bufnr]
  local row, col = cursor()
  local line = line_at(bufnr, row)
  local before, after = line:sub(1, col), line:sub(col + 1)
  if state ~= nil and state.row == row and after == state.after and #before > #state.before
    and vim.startswith(before, state.before)
  then
    local typed = before:sub(#state.before + 1)
    local kept, shown_at = {}, nil
    for position, text in ipairs(state.texts) do
      if vim.startswith(text, typed) and #text > #typed then
        table.insert(kept, text:sub(#typed + 1))
        if position == state.index then
          shown_at = #kept
        end
      end
    end
    if shown_at ~= nil then
      state.col, state.before, state.texts, state.index = col, before, kept, shown_at
      state.tick = vim.api.nvim_buf_get_changedtick(bufnr)
      draw(bufnr)
      return
    end
  end
  M.clear(bufnr)
  local timer = timers[bufnr]
  if timer == nil then
    timer = compat.uv.new_timer()
    timers[bufnr] = timer
  end
  timer:stop()
  timer:start(debounce_ms, 0, vim.schedule_wrap(function()
    if vim.api.nvim_get_current_buf() == bufnr and vim.startswith(vim.api.nvim_get_mode().mode, "i") then
      M.request(client, bufnr)
    end
  end))
end

--- The cursor left the ghost (without an edit, which on_text_changed handles): drop it.
function M.on_cursor_moved(bufnr)
  local state = shown[bufnr]
  if state == nil or vim.api.nvim_buf_get_changedtick(bufnr) ~= state.tick then
    return
  end
  local row, col = cursor()
  if row ~= state.row or col ~= state.col then
    M.clear(bufnr)
  end
end

--- The part of `text` that one word-accept takes: spaces, then a word or a run of punctuation.
function M.first_word(text)
  return text:match("^%s*[^%s%p]+") or text:match("^%s*%p+") or text
end

--- Insert the ghost text, all of it or one word; false when none is shown.
function M.accept(bufnr, how)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local state = shown[bufnr]
  if state == nil then
    return false
  end
  local text = state.texts[state.index]
  if how == "word" then
    text = M.first_word(text)
  end
  cancel_pending(bufnr)
  vim.api.nvim_buf_set_text(bufnr, state.row, state.col, state.row, state.col, { text })
  vim.api.nvim_win_set_cursor(0, { state.row + 1, state.col + #text })
  -- TextChangedI follows: on_text_changed keeps the rest of the ghost, or asks for more.
  return true
end

--- Show the next (step 1) or previous (step -1) alternative; the first time, ask for them.
function M.cycle(client, bufnr, step)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local state = shown[bufnr]
  if state ~= nil and (state.invoked or #state.texts > 1) then
    state.index = (state.index - 1 + step) % #state.texts + 1
    draw(bufnr)
    return
  end
  local current = state and state.texts[state.index]
  ask(client, bufnr, TRIGGER_INVOKED, function(texts, line, row, col)
    if current ~= nil and not vim.tbl_contains(texts, current) then
      table.insert(texts, 1, current)
    end
    show(bufnr, texts, line, row, col, true)
    local state_now = shown[bufnr]
    if state_now ~= nil and current ~= nil and #state_now.texts > 1 then
      local at = 1
      for position, text in ipairs(state_now.texts) do
        if text == current then
          at = position
        end
      end
      state_now.index = (at - 1 + step) % #state_now.texts + 1
      draw(bufnr)
    end
  end)
end

return M
