-- The first filter, so that it sees every request and every answer, Envoy's own included. Our
-- gateway's `transcode`, `_metadata`, `_success_status` and `_forward` (gateway/app.py) do the
-- same; the values both use are gateway/edge.py's, filled in by lua.py.
local STATUSES = @STATUSES@
-- By the status of a gRPC error, the more precise statuses x-http-status may give it.
local ERRORS = @ERRORS@
-- Envoy's status -> the one Tinybird documents for the same failure (gateway/errors.py).
local TINYBIRD = @TINYBIRD@

local function unescape(text, plus_is_space)
  if plus_is_space then text = string.gsub(text, "+", " ") end
  return (string.gsub(text, "%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local metadata = handle:streamInfo():dynamicMetadata()
  -- The access log's method: the transcoder turns every call into a POST.
  metadata:set("pipit", "method", headers:get(":method"))
  -- For local_reply_config, before the transcoder makes every request gRPC.
  local content_type = string.lower(headers:get("content-type") or "")
  metadata:set("pipit", "native_grpc", string.find(content_type, @GRPC@) ~= nil)
  local path = headers:get(":path") or ""
  local base, query = string.match(path, "^([^?]*)%?(.*)$")
  if query == nil then return end
  -- The last token parameter wins, as in our gateway, and every one leaves the path: the token
  -- is a credential, not a field, and must reach neither the services nor the access log.
  local token, kept, pipe_query = nil, {}, false
  for param in string.gmatch(query, "[^&]*") do
    local name, value = string.match(param, "^([^=]*)=(.*)$")
    if name ~= nil and name ~= "" and unescape(name, false) == @TOKEN@ then
      token = unescape(value, true)
    elseif param ~= "" then
      table.insert(kept, param)
      if name ~= nil and value ~= "" and unescape(name, false) == @PIPE_Q@ then
        pipe_query = true
      end
    end
  end
  -- GET /v0/pipes/<pipe>.json?q=… goes to PipeService's :query binding (gateway/app.py
  -- pipe_query_path): the pipe's typed RPC would ignore q.
  if pipe_query and headers:get(":method") == "GET" and string.find(base, @PIPE_JSON@) then
    base = base .. @PIPE_VERB@
  elseif token == nil then
    return
  end
  headers:replace(":path", #kept > 0 and (base .. "?" .. table.concat(kept, "&")) or base)
  if token == nil then return end
  local current = headers:get(@TOKEN_HEADER@)
  if (current == nil or current == "") and token ~= "" then
    headers:replace(@TOKEN_HEADER@, @TOKEN_SCHEME@ .. token)
  end
end

-- The transcoder prints a gRPC error as the google.rpc.Status `{"code":N,"message":"...",
-- "details":[...]}`, in that order and without whitespace; Tinybird's clients read `error`, so
-- the message goes in front under that key too. The message is a JSON string already: it is
-- copied as printed, up to its closing quote (the first `"` not escaped by a backslash), so no
-- byte of it is decoded or re-escaped. Any other body (Envoy's local replies, which
-- local_reply_config already gives `error`; a health answer) does not start that way.
local function add_error_key(handle)
  local body = handle:body()
  if body == nil then return end
  local text = body:getBytes(0, body:length())
  local head = string.match(text, '^{"code":%-?%d+,"message":"')
  if head == nil then return end
  local i = #head + 1
  while i <= #text do
    local byte = string.byte(text, i)
    if byte == 92 then
      i = i + 2  -- a backslash and the character it escapes
    elseif byte == 34 then
      break
    else
      i = i + 1
    end
  end
  if i > #text then return end  -- not a complete string: leave the body alone
  body:setBytes('{"error":' .. string.sub(text, #head, i) .. "," .. string.sub(text, 2))
end

function envoy_on_response(handle)
  local headers = handle:headers()
  -- The echoed Access-Control-Allow-Origin depends on Origin; shared caches must know.
  headers:add("vary", @VARY@)
  -- gRPC framing the transcoder leaves in the headers of a JSON answer; our gateway does not
  -- send it. An answer to a native gRPC request keeps it: it is all the client reads.
  if not string.find(headers:get("content-type") or "", @GRPC@) then
    headers:remove("grpc-status")
    headers:remove("grpc-message")
    headers:remove("grpc-accept-encoding")
  end
  local wanted = headers:get(@STATUS_KEY@)
  if wanted ~= nil then
    headers:remove(@STATUS_KEY@)
    -- Only a 2xx with a body may replace a 200: an error travels as a gRPC status, and may
    -- only be made more precise.
    local status = headers:get(":status")
    if (status == "200" and STATUSES[wanted]) or (ERRORS[status] and ERRORS[status][wanted]) then
      headers:replace(":status", wanted)
    end
  end
  local status = headers:get(":status")
  if TINYBIRD[status] then
    status = TINYBIRD[status]
    headers:replace(":status", status)
  end
  -- A 429 always says when to come back (gateway/errors.py DEFAULT_RETRY_AFTER).
  if status == @TOO_MANY@ and headers:get("retry-after") == nil then
    headers:add("retry-after", @RETRY_AFTER@)
  end
  if (tonumber(status) or 0) >= 400
      and string.find(headers:get("content-type") or "", "^application/json") then
    add_error_key(handle)
  end
end
