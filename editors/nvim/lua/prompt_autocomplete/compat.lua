-- The few Neovim APIs that changed between 0.7 and 0.11+, behind one name each, so the rest of
-- the plugin reads the same on every version.
local M = {}

M.has_0_8 = vim.fn.has("nvim-0.8") == 1
M.has_0_10 = vim.fn.has("nvim-0.10") == 1
M.has_0_11 = vim.fn.has("nvim-0.11") == 1

M.uv = vim.uv or vim.loop

--- Clients attached to a buffer, optionally only the one with this name.
function M.clients(bufnr, name)
  local found
  if vim.lsp.get_clients then -- 0.10+
    found = vim.lsp.get_clients({ bufnr = bufnr, name = name })
  elseif M.has_0_8 then
    found = vim.lsp.get_active_clients({ bufnr = bufnr, name = name })
  else -- 0.7: a map from id to client, no filter
    found = {}
    for _, client in pairs(vim.lsp.buf_get_clients(bufnr)) do
      if name == nil or client.name == name then
        table.insert(found, client)
      end
    end
  end
  return found
end

--- Send a request; 0.11 made request a method (the dotted call is deprecated there).
function M.request(client, method, params, handler, bufnr)
  if M.has_0_11 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

--- Cancel a request sent with M.request.
function M.cancel_request(client, id)
  if M.has_0_11 then
    return client:cancel_request(id)
  end
  return client.cancel_request(id)
end

--- Byte column of an LSP position's character offset in `line`, in the client's encoding.
function M.byte_col(line, character, encoding)
  if encoding == "utf-8" then
    return math.min(character, #line)
  end
  local ok, col
  if M.has_0_11 then
    ok, col = pcall(vim.str_byteindex, line, encoding, character, false)
  else
    ok, col = pcall(vim.str_byteindex, line, character, encoding == "utf-16")
  end
  return ok and col or #line
end

--- Position params for the cursor, in the client's offset encoding.
function M.position_params(client)
  return vim.lsp.util.make_position_params(0, client.offset_encoding)
end

--- Start (or reuse) the server for a buffer: vim.lsp.start from 0.8, start_client on 0.7.
local started_on_0_7 = nil
function M.start(config, bufnr)
  if M.has_0_8 then
    return vim.lsp.start(config, { bufnr = bufnr })
  end
  if started_on_0_7 == nil or vim.lsp.get_client_by_id(started_on_0_7) == nil then
    started_on_0_7 = vim.lsp.start_client(config)
  end
  if started_on_0_7 ~= nil then
    vim.lsp.buf_attach_client(bufnr, started_on_0_7)
  end
  return started_on_0_7
end

return M
