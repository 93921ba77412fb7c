-- After the methods filter. A refusal is a local reply with a plain-text message:
-- local_reply_config gives it the JSON error shape.
local ACCEPTED = { @ACCEPTED@ }

function envoy_on_request(handle)
  local headers = handle:headers()
  -- The transcoder lets native gRPC through untouched; our gateway speaks JSON only, and the
  -- services' whole gRPC API (streams, reflection) stays inside.
  if string.find(string.lower(headers:get("content-type") or ""), "^application/grpc") then
    -- Envoy frames the answer to a gRPC request as gRPC: UNIMPLEMENTED, with this message.
    local path = string.match(headers:get(":path") or "", "^[^?]*")
    handle:respond({ [":status"] = "404" }, "@NO_ROUTE_BEFORE@" .. path .. "@NO_ROUTE_AFTER@")
    return
  end
  local authorization = headers:get("authorization")
  if authorization ~= nil and string.find(authorization, "[^\32-\126]") then
    -- UNAUTHENTICATED's status as Envoy gives it; the first filter makes it Tinybird's 403.
    handle:respond({ [":status"] = "401" }, "@UNPRINTABLE@")
    return
  end
  local encoding = string.lower(headers:get("content-encoding") or "")
  encoding = string.match(encoding, "^%s*(.-)%s*$")
  if not ACCEPTED[encoding] then
    handle:respond({ [":status"] = "415" }, "@ENCODING_BEFORE@" .. encoding .. "@ENCODING_AFTER@")
    return
  end
  -- Before a byte of the body is read; the buffer filter counts a body without a length.
  local length = tonumber(headers:get("content-length") or "")
  local path = string.match(headers:get(":path") or "", "^[^?]*")
  if path == "@IMPORT_PATH@" then
    if length ~= nil and length > @IMPORT_MAX_BODY@ then
      handle:respond({ [":status"] = "413" }, "@IMPORT_TOO_LARGE@")
    end
  elseif length ~= nil and length > @MAX_BODY@ then
    handle:respond({ [":status"] = "413" }, "@TOO_LARGE@")
  end
end
