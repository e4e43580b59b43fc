-- ArgoCD health check for alm.dev/AgentRetirement.
-- ArgoCD passes the live object as `obj`; the script returns hs.status
-- (Healthy / Progressing / Degraded / Unknown) and hs.message.
-- Only Lua 5.1 base and string functions are used (ArgoCD runs gopher-lua).
local hs = {}

local function findCondition(conditionType)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == conditionType then
      return condition
    end
  end
  return nil
end

-- The message of the first listed condition that has status `wanted` and a message.
local function conditionMessage(wanted, types, fallback)
  for _, conditionType in ipairs(types) do
    local condition = findCondition(conditionType)
    if condition ~= nil and condition.status == wanted and condition.message ~= nil and condition.message ~= "" then
      return condition.message
    end
  end
  return fallback
end

-- A status written for an older spec says nothing about the current one.
local generation = obj.metadata.generation or 0
local observed = nil
if obj.status ~= nil then
  observed = obj.status.observedGeneration
end
if observed == nil or observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local invalid = findCondition("Invalid")
if invalid ~= nil and invalid.status == "True" then
  hs.status = "Degraded"
  hs.message = invalid.message or "The spec is invalid"
  return hs
end

local status = obj.status
local phase = status.phase
if phase == "Retired" then
  hs.status = "Healthy"
  hs.message = conditionMessage("True", {"Retired"}, "Retired")
elseif phase == "Failed" then
  hs.status = "Degraded"
  if status.message ~= nil and status.message ~= "" then
    hs.message = status.message
  else
    hs.message = conditionMessage("True", {"Failed"}, nil) or conditionMessage("False", {"Ready", "Retired"}, "Retirement failed")
  end
elseif phase == nil or phase == "Pending" or phase == "Draining" or phase == "Revoking" or phase == "Archiving" then
  hs.status = "Progressing"
  if status.message ~= nil and status.message ~= "" then
    hs.message = status.message
  else
    hs.message = conditionMessage("True", {"Progressing"}, "Retirement is " .. string.lower(phase or "pending"))
  end
else
  -- A phase this check does not know yet still means work in progress, never a false alarm.
  hs.status = "Progressing"
  hs.message = "Retirement is in phase " .. tostring(phase)
end
return hs
