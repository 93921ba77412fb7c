-- After the CORS filter, which answers a preflight first, so that the 405 carries CORS headers as
-- ours does; before the refusals, as our gateway matches the route before it looks at the token,
-- the encoding or the length. Kept in step with gateway/routes.py (`RouteTable._split`,
-- `PathTemplate.match`, `RouteTable.allowed_methods`): the same split of the raw path (no
-- unescaping, a `:verb` only when some rule declares it, trailing empty segments dropped), the
-- same segment rules (a literal must be equal, `*` takes any one segment, a final `**` any
-- number). Rendered per route table by lua.py `methods_lua` into the route configuration; the
-- status and words are gateway/edge.py's METHOD_NOT_ALLOWED.
local VERBS = @VERBS@
-- Per route: HTTP method, verb, segment count, whether it ends in `**`, literals by position.
local ROUTES = {
@ROUTES@
}

local function split(path)
  local verb = ""
  local stem, suffix = string.match(path, "^(.*):([^:/]*)$")
  if stem ~= nil and VERBS[suffix] then
    path, verb = stem, suffix
  end
  if string.sub(path, 1, 1) == "/" then path = string.sub(path, 2) end
  local parts = {}
  for part in string.gmatch(path .. "/", "([^/]*)/") do parts[#parts + 1] = part end
  while #parts > 0 and parts[#parts] == "" do parts[#parts] = nil end
  return parts, verb
end

local function allowed_methods(path)
  local parts, verb = split(path)
  local methods, seen = {}, {}
  for _, route in ipairs(ROUTES) do
    local method, count, open_ended = route[1], route[3], route[4]
    local fits = route[2] == verb and not seen[method]
      and ((open_ended and #parts >= count - 1) or #parts == count)
    if fits then
      for position, text in pairs(route[5]) do
        if parts[position] ~= text then fits = false break end
      end
    end
    if fits then
      seen[method] = true
      methods[#methods + 1] = method
    end
  end
  table.sort(methods)
  return methods
end

function envoy_on_request(handle)
  local headers = handle:headers()
  -- Native gRPC is the refusals filter's to answer, in gRPC, whatever the path.
  if string.find(string.lower(headers:get("content-type") or ""), @GRPC@) then
    return
  end
  local method = headers:get(":method") or ""
  local path = string.match(headers:get(":path") or "", "^[^?]*")
  local methods = allowed_methods(path)
  if #methods == 0 then return end  -- unknown path: the transcoder's 404
  for _, known in ipairs(methods) do
    if known == method then return end
  end
  local listed = table.concat(methods, ", ")
  handle:respond({ [":status"] = @STATUS@, ["allow"] = listed }, @MESSAGE@)
end
