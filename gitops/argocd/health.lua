-- Argo CD health check for pwreset.dev/PasswordResetOperation (Lua 5.1, base library only).
-- Mirrors kstatus, the library Flux uses: deletion and a status older than the spec are
-- Progressing; Ready=True is Healthy; Stalled=True (failed, or blocked until a person acts)
-- is Degraded; Reconciling=True with reason Paused (the pwreset.dev/paused annotation) is
-- Suspended, as Argo CD shows a paused Deployment; anything else is still Progressing.
local hs = {}

local function condition(conditions, type_)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function message_of(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local observed = nil
if obj.status ~= nil then
  observed = obj.status.observedGeneration
end
if generation ~= nil and observed ~= nil and observed ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

if obj.status == nil or obj.status.conditions == nil or #obj.status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end

local ready = condition(obj.status.conditions, "Ready")
local stalled = condition(obj.status.conditions, "Stalled")
local reconciling = condition(obj.status.conditions, "Reconciling")

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message_of(ready, "The password reset succeeded")
  return hs
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = message_of(stalled, stalled.reason or "Stalled")
  return hs
end

if reconciling ~= nil and reconciling.status == "True" and reconciling.reason == "Paused" then
  hs.status = "Suspended"
  hs.message = message_of(reconciling, "Paused")
  return hs
end

if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = message_of(reconciling, "Reconciling")
  return hs
end

hs.status = "Progressing"
hs.message = message_of(ready, "Waiting for the operation to finish")
return hs
