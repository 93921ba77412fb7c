-- After the methods filter. A refusal is a local reply with a plain-text message:
-- local_reply_config gives it the JSON error shape. Statuses and words are gateway/edge.py's
-- (NATIVE_GRPC, UNPRINTABLE_TOKEN, UNSUPPORTED_ENCODING, BODY_TOO_LARGE); our gateway answers
-- the same from gateway/app.py and gateway/body.py.
local ACCEPTED = @ACCEPTED@

function envoy_on_request(handle)
  local headers = handle:headers()
  local path = string.match(headers:get(":path") or "", "^[^?]*")
  -- The transcoder lets native gRPC through untouched; our gateway speaks JSON only, and the
  -- services' whole gRPC API (streams, reflection) stays inside.
  if string.find(string.lower(headers:get("content-type") or ""), @GRPC@) then
    -- Envoy frames the answer to a gRPC request as gRPC: UNIMPLEMENTED, with this message.
    handle:respond({ [":status"] = @NATIVE_GRPC_STATUS@ }, @NATIVE_GRPC@)
    return
  end
  local authorization = headers:get(@TOKEN_HEADER@)
  if authorization ~= nil and string.find(authorization, "[^\32-\126]") then
    -- UNAUTHENTICATED's status as Envoy gives it; the first filter makes it Tinybird's 403.
    handle:respond({ [":status"] = @UNPRINTABLE_STATUS@ }, @UNPRINTABLE@)
    return
  end
  local encoding = string.lower(headers:get("content-encoding") or "")
  encoding = string.match(encoding, "^%s*(.-)%s*$")
  if not ACCEPTED[encoding] then
    handle:respond({ [":status"] = @ENCODING_STATUS@ }, @ENCODING@)
    return
  end
  -- Before a byte of the body is read; the buffer filter counts a body without a length.
  local length = tonumber(headers:get("content-length") or "")
  if path == @IMPORT_PATH@ then
    if length ~= nil and length > @IMPORT_MAX_BODY@ then
      handle:respond({ [":status"] = @TOO_LARGE_STATUS@ }, @IMPORT_TOO_LARGE@)
    end
  elseif length ~= nil and length > @MAX_BODY@ then
    handle:respond({ [":status"] = @TOO_LARGE_STATUS@ }, @TOO_LARGE@)
  end
end
