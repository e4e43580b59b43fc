-- ArgoCD health check for alm.dev/AgentRollout.
-- ArgoCD passes the live object as `obj`; the script returns hs.status
-- (Healthy / Progressing / Degraded / Suspended / Unknown) and hs.message.
-- A rollout that waits for a human (Paused, AwaitingApproval) is Suspended and
-- says what to do. Only Lua 5.1 base and string functions are used.
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

local function nonEmpty(value)
  return value ~= nil and value ~= ""
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
-- The step number is status.currentStep, as in the Step column of `kubectl get agentrollouts`.
local step = "?"
if status.currentStep ~= nil then
  step = tostring(status.currentStep)
end

-- Why a rollout stopped: status.abort (reason, and the KPI that failed), then the
-- human message; else a condition; else say that nothing was recorded.
local function abortReason()
  local parts = {}
  local abort = status.abort
  if abort ~= nil and nonEmpty(abort.reason) then
    local reason = abort.reason
    if nonEmpty(abort.kpi) then
      reason = reason .. " (" .. abort.kpi
      if abort.value ~= nil then
        reason = reason .. " " .. tostring(abort.value)
      end
      if abort.threshold ~= nil then
        reason = reason .. ", limit " .. tostring(abort.threshold)
      end
      reason = reason .. ")"
    end
    table.insert(parts, reason)
  end
  if nonEmpty(status.message) then
    table.insert(parts, status.message)
  end
  if #parts == 0 then
    return conditionMessage("True", {"Aborted", "RolledBack", "RolloutFailed"}, "no reason recorded")
  end
  return table.concat(parts, ". ")
end

if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = conditionMessage("True", {"Succeeded", "Completed"}, "Rollout succeeded")
elseif phase == "Progressing" then
  hs.status = "Progressing"
  if nonEmpty(status.message) then
    hs.message = status.message
  else
    local weight = "?"
    if status.weight ~= nil then
      weight = tostring(status.weight)
    end
    hs.message = conditionMessage("True", {"Progressing"}, "Step " .. step .. ", weight " .. weight .. "%")
  end
elseif phase == "Pending" or phase == nil then
  hs.status = "Progressing"
  if nonEmpty(status.message) then
    hs.message = status.message
  else
    hs.message = "Rollout is pending"
  end
elseif phase == "Paused" then
  hs.status = "Suspended"
  if nonEmpty(status.message) then
    hs.message = status.message
  else
    hs.message = conditionMessage("True", {"Paused"}, "Rollout is paused at step " .. step)
  end
elseif phase == "AwaitingApproval" then
  hs.status = "Suspended"
  hs.message = "Waiting for approval of step " .. step .. ": run kubectl alm approve "
    .. obj.metadata.name .. " -n " .. (obj.metadata.namespace or "default")
elseif phase == "RolledBack" then
  hs.status = "Degraded"
  hs.message = "Rolled back: " .. abortReason()
elseif phase == "Aborted" then
  hs.status = "Degraded"
  hs.message = "Aborted: " .. abortReason()
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
