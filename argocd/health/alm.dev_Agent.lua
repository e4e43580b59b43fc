-- ArgoCD health check for alm.dev/Agent.
-- ArgoCD passes the live object as `obj`; the script returns hs.status
-- (Healthy / Progressing / Degraded / Suspended / Unknown) and hs.message.
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

local phase = obj.status.phase
if phase == "Available" then
  hs.status = "Healthy"
  hs.message = conditionMessage("True", {"Ready"}, "Agent is available")
elseif phase == "Degraded" then
  -- The problem conditions say why (a failed rollout, breached KPIs); else Ready=False does.
  hs.status = "Degraded"
  hs.message = conditionMessage("True", {"Degraded", "RolloutFailed", "KPIBreached", "BudgetExceeded"}, nil)
    or conditionMessage("False", {"Ready"}, "Agent is degraded")
elseif phase == "Progressing" or phase == "Pending" or phase == nil then
  hs.status = "Progressing"
  hs.message = conditionMessage("True", {"Progressing"}, nil)
    or conditionMessage("False", {"Ready"}, "Agent is " .. string.lower(phase or "pending"))
elseif phase == "Suspended" then
  -- Scaled to zero by the budget or by hand: intended, waiting, not broken.
  hs.status = "Suspended"
  hs.message = conditionMessage("True", {"BudgetExceeded", "Suspended"}, "Agent is suspended")
elseif phase == "Retired" then
  -- Retirement is the intended end of an Agent, not a failure: it must not alert.
  hs.status = "Healthy"
  hs.message = "Retired"
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
