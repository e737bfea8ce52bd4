#!/usr/bin/env bash
# `make demo`: a local Kubernetes control plane, the Graph emulator, a device-code sign-in
# (`pwreset-operator login`) that writes the credentials Secret, the operator and three
# PasswordResetOperations (one succeeds, one fails, one is throttled first), and one
# PasswordReset that starts a reset itself (resetPassword, at most once), live.
#
# Needs what `make demo` builds first: target/control-plane/kube-control-plane (and the
# kubectl link to it), target/debug/pwreset-operator and target/debug/graph-emulator.
# Everything it starts is stopped when it exits, on Ctrl-C too; nothing is left behind.
#
# Environment: DEMO_KEEP_RUNNING=1 waits for Ctrl-C/Enter at the end (the default when
# stdin is a terminal); DEMO_KEEP_RUNNING=0 stops at once. DEMO_TIMEOUT (default 180s)
# bounds the wait for the resources to finish. DEMO_ON_NODE=1 (`make demo-node`) runs the
# operator as pods from the chart on a real node (containerd + kubelet, from `make node
# image tools`) instead of as a host process.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
CONTROL_PLANE=$ROOT/target/control-plane/kube-control-plane
KUBECTL=${KUBECTL:-$ROOT/target/tools/bin/kubectl}
OPERATOR=$ROOT/target/debug/pwreset-operator
EMULATOR=$ROOT/target/debug/graph-emulator
EMULATOR_CONFIG=$ROOT/examples/emulator.yaml
NS=pwreset-demo
TIMEOUT=${DEMO_TIMEOUT:-180s}
ON_NODE=${DEMO_ON_NODE:-0}
NODE_IP=10.244.0.1 # the node's bridge (tests/control-plane/node.go): pods reach the host here
HELM=$ROOT/target/tools/bin/helm
if [[ -t 0 ]]; then KEEP_RUNNING=${DEMO_KEEP_RUNNING:-1}; else KEEP_RUNNING=${DEMO_KEEP_RUNNING:-0}; fi

if [[ -t 1 ]]; then B=$'\e[1m' D=$'\e[2m' G=$'\e[32m' R=$'\e[31m' N=$'\e[0m'; else B='' D='' G='' R='' N=''; fi
say() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
die() { printf '%sdemo: %s%s\n' "$R" "$*" "$N" >&2; exit 1; }

for f in "$CONTROL_PLANE" "$KUBECTL" "$OPERATOR" "$EMULATOR"; do
  [[ -x $f ]] || die "$f is missing: run \`make demo\` (it builds everything first)"
done
if [[ $ON_NODE == 1 ]]; then
  for f in "$HELM" "$ROOT/target/node/bin/containerd" "$ROOT/target/image/pause.oci.tar" "$ROOT/target/image/pwreset-operator.oci.tar"; do
    [[ -e $f ]] || die "$f is missing: run \`make demo-node\` (it builds the node and the image first)"
  done
fi
[[ -f $EMULATOR_CONFIG ]] || die "$EMULATOR_CONFIG is missing"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pwreset-demo.XXXXXX")
export KUBECONFIG=$WORK/control-plane/admin.kubeconfig

# Started processes, stopped in reverse order on exit.
PIDS=()
NAMES=()
WATCH_PID=
WAIT_PID=

stop_pid() { # pid name [seconds]: SIGTERM, then SIGKILL after 15 s (or seconds)
  local pid=$1 name=$2 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < ${3:-15} * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    printf '%s did not stop; killing it\n' "$name" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local code=$?
  trap - EXIT INT TERM
  [[ -n $WAIT_PID ]] && stop_pid "$WAIT_PID" "kubectl wait"
  [[ -n $WATCH_PID ]] && stop_pid "$WATCH_PID" "kubectl get -w"
  if ((${#PIDS[@]})); then
    say "Stopping everything"
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
      # The node removes its pods, mounts and bridge on SIGTERM: give it time for that.
      stop_pid "${PIDS[i]}" "${NAMES[i]}" 120
    done
  fi
  if ((code != 0 && code != 130)) && [[ -d $WORK ]]; then
    printf '%sLast operator log lines:%s\n' "$D" "$N" >&2
    tail -n 20 "$WORK/operator.log" >&2 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() { # name logfile command...: start in the background, remember the pid
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
}

wait_for_line() { # name logfile pattern timeout-seconds: wait for a line in a process's log
  local name=$1 log=$2 pattern=$3 timeout=$4 pid=${PIDS[${#PIDS[@]} - 1]} i
  for ((i = 0; i < timeout * 10; i++)); do
    grep -qE "$pattern" "$log" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "$name exited"; }
    sleep 0.1
  done
  cat "$log" >&2
  die "$name did not print \"$pattern\" within ${timeout}s"
}

free_port() { # a TCP port nobody listens on, from 18080 up
  local p
  for ((p = 18080; p < 18200; p++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  die "no free port in 18080-18199"
}

http_status() { # port path: the HTTP status code, with bash alone (no curl needed)
  local reply
  reply=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$2" >&3 && head -n 1 <&3) 2>/dev/null) || true
  awk '{print $2}' <<<"$reply"
}

k() { "$KUBECTL" -n "$NS" "$@"; }

# 1. Kubernetes: etcd + kube-apiserver + kube-controller-manager, on a free port. It also stops
#    by itself if this script dies without cleaning up (--exit-with-parent).
say "Starting a local Kubernetes control plane"
CP_ARGS=(--data-dir "$WORK/control-plane" --exit-with-parent)
[[ $ON_NODE == 1 ]] && CP_ARGS+=(--node-ip "$NODE_IP")
start control-plane "$WORK/control-plane.out" "$CONTROL_PLANE" "${CP_ARGS[@]}"
wait_for_line "the control plane" "$WORK/control-plane.out" '^ready$' 120
if [[ $ON_NODE == 1 ]]; then
  say "Starting a node: containerd + kubelet + kube-proxy, with the operator image imported"
  start node "$WORK/node.out" "$CONTROL_PLANE" node --data-dir "$WORK/node" --kubeconfig "$KUBECONFIG" \
    --bin-dir "$ROOT/target/node/bin" --import "$ROOT/target/image/pause.oci.tar" \
    --import "$ROOT/target/image/pwreset-operator.oci.tar" --exit-with-parent
  wait_for_line "the node" "$WORK/node.out" '^ready$' 180
  # kubelet registers the Node a moment after the node prints ready: poll, with a deadline.
  for ((i = 0; i < 1800; i++)); do
    [[ $("$KUBECTL" get node pwreset-node -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]] && break
    sleep 0.1
  done
  ((i < 1800)) || die "the node did not become Ready within 180s; see $WORK/node/logs/kubelet.log"
  "$KUBECTL" get nodes -o wide
fi
"$KUBECTL" version 2>/dev/null | sed 's/^/    /'

# 2. The Graph emulator with the demo's tenant, token and scripted operations.
say "Starting the Graph emulator (examples/emulator.yaml)"
EMULATOR_LISTEN=127.0.0.1:0
[[ $ON_NODE == 1 ]] && EMULATOR_LISTEN=$NODE_IP:0 # where the operator's pods reach it
start graph-emulator "$WORK/emulator.log" "$EMULATOR" --listen "$EMULATOR_LISTEN" --config "$EMULATOR_CONFIG"
wait_for_line "the Graph emulator" "$WORK/emulator.log" '^listening on http' 30
GRAPH_URL=$(sed -n 's/^listening on //p' "$WORK/emulator.log" | head -n 1)
echo "    Graph: $GRAPH_URL"

# 3. The CRD, a namespace and the credentials Secret: written by `pwreset-operator login`, the
#    device-code sign-in a person does once for a real tenant. The emulator approves the code
#    by itself after 8 s (deviceCode.autoApproveAfterSeconds in examples/emulator.yaml).
say "Installing the PasswordResetOperation and PasswordReset CRDs"
"$KUBECTL" apply --server-side -f "$ROOT/crds/"
"$KUBECTL" wait --for=condition=Established --timeout=60s crd/passwordresetoperations.pwreset.dev crd/passwordresets.pwreset.dev
"$KUBECTL" create namespace "$NS"
say "Signing in: pwreset-operator login (device code; the emulator approves it after 8 s)"
LOGIN_ARGS=(--tenant contoso.onmicrosoft.com --client-id 0d3c6a5e-1f0b-4a4e-9a53-6f1b0c0f1e01
  --login-url "$GRAPH_URL" --namespace "$NS")
[[ $ON_NODE == 1 ]] && LOGIN_ARGS+=(--allow-plain-http) # the emulator is on the node's bridge
"$OPERATOR" login "${LOGIN_ARGS[@]}" || die "pwreset-operator login failed"
k get secret graph-credentials -o 'go-template={{range $k, $v := .data}}    {{$k}}{{"\n"}}{{end}}'

# 4. The operator, polling every 2 s: pods from the chart (DEMO_ON_NODE=1) or a host process.
if [[ $ON_NODE == 1 ]]; then
  say "Installing the chart: the operator as a pod on the node"
  "$HELM" install pwreset "$ROOT/charts/pwreset-operator" --namespace pwreset-system --create-namespace \
    --set image.pullPolicy=Never --set pollInterval=2s --set logFormat=text \
    --set graphUrl="$GRAPH_URL" --set loginUrl="$GRAPH_URL" --set allowPlainHttp=true \
    --set passwordReset.enabled=true --set "passwordReset.admission.allowedNamespaces={$NS}" >/dev/null
  "$KUBECTL" -n pwreset-system rollout status deployment/pwreset-pwreset-operator --timeout=180s
  "$KUBECTL" -n pwreset-system get pods -o wide
  METRICS_PORT="<pod IP>:8080 (kubectl -n pwreset-system get pods -o wide)"
else
METRICS_PORT=$(free_port)
say "Starting pwreset-operator (metrics on 127.0.0.1:$METRICS_PORT)"
start pwreset-operator "$WORK/operator.log" "$OPERATOR" run \
  --graph-url "$GRAPH_URL" --login-url "$GRAPH_URL" --poll-interval 2s --enable-password-reset \
  --metrics-addr "127.0.0.1:$METRICS_PORT" --log-format text
for ((i = 0; i < 600; i++)); do
  [[ $(http_status "$METRICS_PORT" /readyz) == 200 ]] && break
  kill -0 "${PIDS[${#PIDS[@]} - 1]}" 2>/dev/null || { cat "$WORK/operator.log" >&2; die "the operator exited"; }
  sleep 0.1
done
[[ $(http_status "$METRICS_PORT" /readyz) == 200 ]] || die "the operator did not become ready within 60s"
echo "    ready"
fi

# 5. Three resources: by id (succeeds), by id (fails), by Location URL (throttled twice first).
say "Creating three PasswordResetOperations"
k apply -f "$ROOT/examples/passwordresetoperation-by-id.yaml"
k apply -f - <<'EOF'
apiVersion: pwreset.dev/v1alpha1
kind: PasswordResetOperation
metadata:
  name: reset-bob
spec:
  userId: bob@contoso.com
  operationId: op-fails
  credentialsSecretRef:
    name: graph-credentials
EOF
# The example's Location is on graph.microsoft.com; the operator only sends its token to its
# own Graph host, here the emulator.
if [[ $ON_NODE == 1 ]]; then
  # The CRD accepts a plain-http location only on loopback, and the pods reach the emulator
  # on the node's bridge: name the same operation by user and id instead.
  sed -E "s#^  location: https://graph.microsoft.com/v1.0/users/([^/]+)/authentication/operations/([^?]+).*#  userId: \1\n  operationId: \2#" \
    "$ROOT/examples/passwordresetoperation-by-location.yaml" | k apply -f -
else
  sed "s#https://graph.microsoft.com#${GRAPH_URL}#" "$ROOT/examples/passwordresetoperation-by-location.yaml" | k apply -f -
fi

# 6. A PasswordReset: the operator generates a password, stores it in Secret
#    carol-new-password, calls resetPassword once and tracks the operation with a child.
#    resetPassword needs delegated UserAuthenticationMethod.ReadWrite.All: the emulator's
#    static demo token has it (the login above asked for Read.All only, least privilege).
say "Creating a PasswordReset for carol@contoso.com (the operator calls resetPassword)"
k create secret generic reset-credentials --from-literal=token=demo-static-token
k apply -f - <<'EOF'
apiVersion: pwreset.dev/v1alpha1
kind: PasswordReset
metadata:
  name: reset-carol
spec:
  userId: carol@contoso.com
  credentialsSecretRef:
    name: reset-credentials
  passwordSecretName: carol-new-password
  pollInterval: 2s
EOF

say "Watching (kubectl get pwreset -w) until every resource is Finished"
"$KUBECTL" -n "$NS" get pwreset -w &  # not via k(): $! must be kubectl itself
WATCH_PID=$!
# kubectl wait handles Ctrl-C itself, and bash then ignores it: run it in a process group of
# its own (set -m) and wait for it with the `wait` builtin, which Ctrl-C interrupts at once.
set -m
"$KUBECTL" -n "$NS" wait --for=condition=Finished pwreset --all --timeout="$TIMEOUT" >/dev/null &
WAIT_PID=$!
set +m
wait "$WAIT_PID" || die "not every resource was Finished within $TIMEOUT"
WAIT_PID=
k wait --for=condition=Finished pwr/reset-carol --timeout="$TIMEOUT" >/dev/null || die "reset-carol was not Finished within $TIMEOUT"
sleep 0.5 # let the watch print the last change
stop_pid "$WATCH_PID" "kubectl get -w"
WATCH_PID=

say "Final state (kubectl get pwreset -o wide)"
k get pwreset -o wide
echo
k get pwreset -o jsonpath='{range .items[*]}{.metadata.name}{"\tReady="}{.status.conditions[?(@.type=="Ready")].status}{"\tStalled="}{.status.conditions[?(@.type=="Stalled")].reason}{"\n"}{end}' |
  sed "s/^/    /; s/Ready=True/${G}Ready=True${N}/; s/Stalled=\([A-Za-z]\+\)/${R}Stalled=\1${N}/; s/Stalled=\$/Stalled=-/"

say "What the operator recorded for reset-by-location (throttled first)"
k get events --field-selector involvedObject.name=reset-by-location --sort-by=.metadata.creationTimestamp \
  -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message

say "The PasswordReset (kubectl get pwr -o wide), its password Secret (keys only) and events"
k get pwr -o wide
k get secret carol-new-password -o 'go-template=    Secret {{.metadata.name}}, owned by {{(index .metadata.ownerReferences 0).kind}}/{{(index .metadata.ownerReferences 0).name}}, keys:{{range $k, $v := .data}} {{$k}}{{end}}{{"\n"}}'
k get events --field-selector involvedObject.name=reset-carol --sort-by=.metadata.creationTimestamp \
  -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message
GRAPH_HOSTPORT=${GRAPH_URL#http://}
printf '    resets the emulator processed: %s\n' \
  "$( (exec 3<>"/dev/tcp/${GRAPH_HOSTPORT%%:*}/${GRAPH_HOSTPORT##*:}" && printf 'GET /_emulator/reset-password HTTP/1.0\r\nHost: x\r\n\r\n' >&3 && tail -n 1 <&3) 2>/dev/null || echo '?')"

say "Look further"
if [[ $KEEP_RUNNING == 1 ]]; then
  cat <<EOF
  From another terminal, while this one waits:
    export KUBECONFIG=$KUBECONFIG
    $KUBECTL -n $NS describe pwreset reset-bob
    $KUBECTL -n $NS get events --sort-by=.metadata.creationTimestamp
    $KUBECTL -n $NS wait --for=condition=Finished pwreset/reset-alice
    curl -s http://127.0.0.1:$METRICS_PORT/metrics | grep '^pwreset_'
    curl -s $GRAPH_URL/_emulator/requests      # every request the operator sent
    less $WORK/operator.log
EOF
  printf '\n%sEverything keeps running for you to look. Press Enter or Ctrl-C to stop it all.%s\n' "$B" "$N"
  read -r _ || true
else
  cat <<'EOF'
  Run `make demo` in a terminal to keep everything running at this point, then:
    kubectl describe pwreset reset-bob                 # conditions, Graph's statusDetail, events
    kubectl get events --sort-by=.metadata.creationTimestamp
    curl -s http://127.0.0.1:<metrics port>/metrics    # pwreset_* metrics
    curl -s <graph url>/_emulator/requests             # every request the operator sent
EOF
fi
