#!/usr/bin/env bash
# swarmsec demo: `make demo` runs `e2e/demo.sh up`, `make demo-down` runs
# `e2e/demo.sh down`.
#
# up:   brings up a three-node Swarm of docker-in-docker engines on this
#       machine's Docker engine (the e2e tests' cluster: nothing is pulled),
#       deploys the `shop` stack in the shape people start from (one
#       unencrypted overlay network, every service reaching every other,
#       web on the routing mesh), shows who can reach whom, then runs the
#       swarmsec controller on a copy of manifests/ and shows the result;
#       then deploys the node agent and restricts web's published port to
#       one client address. The cluster, the agents and the controller stay
#       up to look around.
# down: stops the controller and removes the cluster: node containers and
#       their engines, volumes, networks, cgroups, the state in e2e/.work.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=e2e/.work
BIN=$WORK/bin
STACK=shop
SERVICES=(shop_web shop_api shop_db shop_cache)

bold=$(tput bold 2>/dev/null || true)
reset=$(tput sgr0 2>/dev/null || true)
heading() { printf '\n%s== %s ==%s\n\n' "$bold" "$*" "$reset"; }
say() { printf '%s\n' "$*"; }
die() {
  printf 'demo: %s\n' "$*" >&2
  exit 1
}

# The machine's engine is the one DOCKER_HOST names, or the default one.
# A DOCKER_HOST that names a demo cluster's node (the end of `make demo`
# suggests exporting it) is never the machine's: the demo builds its cluster
# on the engine under it.
machine_engine() {
  if [[ ${DOCKER_HOST:-} == unix://"${TMPDIR:-/tmp}"/swarmsec-e2e-* ]]; then
    say "demo: ignoring DOCKER_HOST=$DOCKER_HOST (a demo cluster's node): the demo uses this machine's engine"
    unset DOCKER_HOST
  fi
}

# CLUSTER (set once the cluster is up) runs a command against the cluster's
# manager: DOCKER_HOST names it and no other DOCKER_ variable of the
# caller's shell can aim the command elsewhere. cdocker and cswarmsec use
# it; plain docker and the demo helper talk to the machine's engine (the
# helper reaches the nodes through cluster.json).
CLUSTER=()
cdocker() { "${CLUSTER[@]}" docker "$@"; }
cswarmsec() { "${CLUSTER[@]}" "$BIN/swarmsec" "$@"; }

alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }
pid_of() { [[ -f "$WORK/$1.pid" ]] && cat "$WORK/$1.pid" || true; }

# wait_exit PID SECONDS: wait for a process that is not our child to exit.
wait_exit() {
  local pid=$1 deadline=$((SECONDS + $2))
  while alive "$pid"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

up() {
  local start=$SECONDS
  command -v go >/dev/null || die "the demo builds swarmsec and its helpers with Go; install Go first"
  machine_engine
  scripts/ensure-docker.sh
  if alive "$(pid_of cluster)" || alive "$(pid_of controller)"; then
    heading "0. An earlier demo is still up: removing it first"
    (down) | sed 's/^/  | /'
  fi
  mkdir -p "$BIN"
  trap 'say ""; say "demo: stopped; \`make demo-down\` removes what is up."' EXIT

  heading "1. Build swarmsec and the demo helper"
  CGO_ENABLED=0 go build -o "$BIN/swarmsec" ./cmd/swarmsec
  CGO_ENABLED=0 go build -o "$BIN/demo" ./dev/demo
  say "built $BIN/swarmsec and $BIN/demo"

  heading "2. A three-node Swarm (docker-in-docker on this machine's engine)"
  rm -f "$WORK/cluster.env" "$WORK/cluster.json"
  # The log exists before the cluster process writes it: the loop below
  # reads it at once.
  : >"$WORK/cluster.log"
  # Its own session: the cluster outlives this script, and its process ID,
  # on every object it made, keeps the e2e tests' sweep away from it.
  setsid nohup "$BIN/demo" cluster --state "$WORK" >"$WORK/cluster.log" 2>&1 </dev/null &
  local cpid=$!
  echo "$cpid" >"$WORK/cluster.pid"
  # The cluster process gives up after 10 minutes itself; this bound is
  # for a process stuck where it cannot notice.
  local shown=0 lines deadline=$((SECONDS + 720))
  while [[ ! -f $WORK/cluster.env ]]; do
    if ! alive "$cpid"; then
      sed -n "$((shown + 1)),\$p" "$WORK/cluster.log"
      die "bringing the cluster up failed (log: $WORK/cluster.log)"
    fi
    if ((SECONDS > deadline)); then
      die "the cluster was not up after 12 minutes (process $cpid, log: $WORK/cluster.log); make demo-down removes it"
    fi
    lines=$(wc -l <"$WORK/cluster.log")
    if ((lines > shown)); then
      sed -n "$((shown + 1)),${lines}p" "$WORK/cluster.log" | sed 's/^/  /'
      shown=$lines
    fi
    sleep 1
  done
  sed -n "$((shown + 1)),\$p" "$WORK/cluster.log" | sed 's/^/  /'
  # shellcheck source=/dev/null
  source "$WORK/cluster.env"
  CLUSTER=(env -u DOCKER_CONTEXT -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH -u DOCKER_API_VERSION
    DOCKER_HOST="unix://$MANAGER_SOCKET")
  say ""
  cdocker node ls --format 'table {{.Hostname}}\t{{.Status}}\t{{.ManagerStatus}}\t{{.EngineVersion}}' | sed 's/^/  /'

  heading "3. The shop app as it is deployed today: docker stack deploy -c shop.yml shop"
  local placement=$PROBED_NODE
  if [[ $ENCRYPTED_CROSS_NODE == true ]]; then
    placement=""
  else
    say "This kernel has no IPsec ESP: encrypted overlay traffic cannot cross nodes here,"
    say "so every shop task runs on $PROBED_NODE (on a kernel with ESP they would spread)."
    say ""
  fi
  write_stack "$placement" >"$WORK/shop.yml"
  sed 's/^/  /' "$WORK/shop.yml"
  cdocker stack deploy --detach=true --resolve-image never -c "$WORK/shop.yml" "$STACK" 2>&1 | sed 's/^/  /'
  "$BIN/demo" wait --state "$WORK" "${SERVICES[@]}"
  say ""
  cdocker service ls --filter "label=com.docker.stack.namespace=$STACK" \
    --format 'table {{.Name}}\t{{.Replicas}}\t{{.Ports}}' | sed 's/^/  /'

  heading "4. Before swarmsec: what the shop looks like from inside"
  "$BIN/demo" show --state "$WORK" "$STACK"
  say "Every service reaches every other one and the outside world, on a network whose"
  say "traffic between nodes is not encrypted. The database answers anyone in the stack."

  heading "5. swarmsec validate manifests"
  ls manifests/*.yaml | sed 's/^/  /'
  say ""
  "$BIN/swarmsec" validate manifests | sed 's/^/  /'

  heading "6. swarmsec plan --manifests manifests (what it would change, and why)"
  local code=0
  cswarmsec plan --manifests manifests >"$WORK/plan.txt" 2>&1 || code=$?
  sed 's/^/  /' "$WORK/plan.txt"
  say ""
  say "(exit status $code: 0 in sync, 2 changes pending, 1 error)"
  ((code == 2)) || die "expected plan to report changes (exit 2)"

  heading "7. swarmsec run: the controller, in the background"
  # The controller reads a copy, so the demo can edit it (step 9) and you
  # can too, without touching the repository.
  rm -rf "$WORK/manifests" && cp -r manifests "$WORK/manifests"
  local port=9477
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    port=$(free_port)
  fi
  local url=http://127.0.0.1:$port
  local ctl
  ctl=$(pid_of controller)
  if alive "$ctl"; then
    say "stopping the controller of an earlier \`make demo\` (process $ctl)"
    kill -TERM "$ctl"
    wait_exit "$ctl" 30 || kill -KILL "$ctl"
  fi
  say "DOCKER_HOST=unix://$MANAGER_SOCKET \\"
  say "  swarmsec run --manifests $WORK/manifests --listen 127.0.0.1:$port > $WORK/controller.log 2>&1 &"
  "${CLUSTER[@]}" setsid nohup "$BIN/swarmsec" run --manifests "$WORK/manifests" --listen "127.0.0.1:$port" --log-format text \
    >"$WORK/controller.log" 2>&1 </dev/null &
  ctl=$!
  echo "$ctl" >"$WORK/controller.pid"
  echo "$url" >"$WORK/controller.url"
  say ""
  say "waiting until it is ready (/readyz) and has converged (swarmsec plan exits 0):"
  if ! "$BIN/demo" wait-controller --state "$WORK" --url "$url" --swarmsec "$BIN/swarmsec" \
    --manifests "$WORK/manifests" --pid "$ctl" --log "$WORK/controller.log" "$STACK"; then
    tail -n 30 "$WORK/controller.log" | sed 's/^/  | /'
    die "the controller did not converge (log: $WORK/controller.log)"
  fi

  heading "8. After: the shop under swarmsec"
  "$BIN/demo" show --state "$WORK" "$STACK"
  say "Only the paths the policies allow are open: web<->api, api<->db, api<->cache."
  say "Every network a shop service is on is swarmsec's own, encrypted overlay; only web"
  say "keeps a way out, and its port is published on the node running it (host mode)."
  say ""
  "$BIN/swarmsec" status --server "$url" | sed 's/^/  /'

  heading "9. Who may reach web's published port: the node agent"
  say "web publishes 8080 in host mode. Two clients outside the Swarm try it, the office"
  say "($OFFICE_IP) and elsewhere ($ELSEWHERE_IP):"
  say ""
  "$BIN/demo" reach --state "$WORK" shop_web 8080
  say ""
  say "Both connect: ports Docker publishes bypass the host's firewall. The node agent,"
  say "swarmsec agent (one task per node: the stack's agent service), enforces who may."
  say "Its image is the same static binary; the demo runs only the agent from the stack,"
  say "its controller stays the one above."
  # A tag of the demo's own: the machine's swarmsec/swarmsec:latest stays
  # whatever it was, and the image leaves the machine's engine once the
  # nodes have it.
  local tag=demo-$RUN_ID
  make --no-print-directory image IMAGE_TAGS="$tag" >"$WORK/image.log" 2>&1 || die "make image failed (log: $WORK/image.log)"
  "$BIN/demo" load-image --state "$WORK" "swarmsec/swarmsec:$tag"
  docker image rm "swarmsec/swarmsec:$tag" >/dev/null
  cat >"$WORK/agent-only.yml" <<'YML'
version: "3.8"
services:
  controller:
    deploy: {mode: replicated, replicas: 0}
  agent:
    command: ["agent", "--log-format", "json", "--events-window", "5s"]
YML
  say ""
  say "SWARMSEC_VERSION=$tag SWARMSEC_DOCKER_SOCKET=/var/run/dind/docker.sock \\"
  say "  docker stack deploy -c deploy/swarmsec.yml -c agent-only.yml swarmsec"
  SWARMSEC_VERSION=$tag SWARMSEC_DOCKER_SOCKET=/var/run/dind/docker.sock cdocker stack deploy --detach=true --resolve-image never \
    -c deploy/swarmsec.yml -c "$WORK/agent-only.yml" swarmsec 2>&1 | sed 's/^/  /'
  say ""
  say "and web.yaml admits the office only, logging what it blocks:"
  awk -v cidr="$OFFICE_IP/32" '{ print } /^      mode: host$/ && !done { print "      from: [{ipBlock: {cidr: " cidr "}}]"; print "      log: blocked"; done = 1 }' \
    manifests/web.yaml >"$WORK/web.yaml.new" && mv "$WORK/web.yaml.new" "$WORK/manifests/web.yaml"
  diff -u manifests/web.yaml "$WORK/manifests/web.yaml" | tail -n +3 | sed 's/^/  /' || true
  say ""
  say "The controller delivers the rules to every agent (a Swarm config the agent service"
  say "mounts); each keeps them in its node's iptables, in a chain of its own:"
  say ""
  "$BIN/demo" reach --state "$WORK" --wait shop_web 8080 || die "the port was not restricted (log: $WORK/controller.log)"
  for _ in 1 2 3; do "$BIN/demo" reach --state "$WORK" shop_web 8080 >/dev/null; done
  sleep 6
  say ""
  say "swarmsec events: the blocked attempts, per node and source (counted, not a line per packet):"
  cswarmsec events --since 10m | sed 's/^/  /'
  say ""
  say "swarmsec status now also shows what the agents found on their nodes:"
  "$BIN/swarmsec" status --server "$url" | sed -n '/^Node agents/,$p' | sed 's/^/  /'

  heading "Look around"
  cat <<EOF
  The cluster and the controller keep running.

  export DOCKER_HOST=unix://$MANAGER_SOCKET
  docker node ls
  docker service ls
  docker network ls --filter label=swarmsec.io/managed=true
  docker service inspect shop_db --format '{{json .Spec.TaskTemplate.Networks}}'
  $BIN/swarmsec status --server $url
  $BIN/swarmsec plan --manifests $WORK/manifests
  $BIN/swarmsec audit --manifests $WORK/manifests
  $BIN/swarmsec events --since 1h
  curl -s $url/metrics | grep ^swarmsec_

  Controller log: $WORK/controller.log (process $ctl)
  Cluster log:    $WORK/cluster.log (process $(pid_of cluster))
  Edit a file in $WORK/manifests/ and the controller converges on it within seconds.

  make demo-down    stops the controller and removes the cluster
EOF
  say ""
  trap - EXIT
  say "make demo took $((SECONDS - start)) s"
}

# write_stack PLACEMENT: the shop stack file; every service on PLACEMENT when
# it is not empty.
write_stack() {
  local constraint=""
  if [[ -n $1 ]]; then
    constraint="
      placement:
        constraints: [\"node.hostname == $1\"]"
  fi
  cat <<EOF
# The shop as most Swarm stacks start: the default network (shop_default, an
# overlay network without encryption), every service on it, web published
# through the routing mesh. The app= labels are service labels (deploy.labels):
# swarmsec's manifests select on them.
version: "3.8"
services:
  web:
    image: $APP_IMAGE
    ports:
      - target: 8080
        published: 8080
        mode: ingress
    deploy:
      labels:
        app: web$constraint
  api:
    image: $APP_IMAGE
    deploy:
      labels:
        app: api$constraint
  db:
    image: $APP_IMAGE
    deploy:
      labels:
        app: db$constraint
  cache:
    image: $APP_IMAGE
    deploy:
      labels:
        app: cache$constraint
EOF
}

free_port() {
  local p
  for p in $(seq 19477 19577); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  die "no free port for the controller"
}

down() {
  local start=$SECONDS run_id=""
  machine_engine
  if [[ -f $WORK/cluster.env ]]; then
    # shellcheck source=/dev/null
    run_id=$(source "$WORK/cluster.env" && echo "$RUN_ID")
  fi

  heading "Stopping the controller"
  local ctl
  ctl=$(pid_of controller)
  if alive "$ctl"; then
    kill -TERM "$ctl"
    if wait_exit "$ctl" 30; then
      say "stopped (process $ctl)"
    else
      kill -KILL "$ctl" 2>/dev/null || true
      say "killed (process $ctl did not stop within 30 s of SIGTERM)"
    fi
  else
    say "not running"
  fi

  heading "Removing the cluster"
  local cpid
  cpid=$(pid_of cluster)
  if alive "$cpid"; then
    kill -TERM "$cpid"
    if ! wait_exit "$cpid" 240; then
      kill -KILL "$cpid" 2>/dev/null || true
      say "the cluster process did not finish within 4 min; sweeping"
    fi
    [[ -f $WORK/cluster.log ]] && sed -n '/stopping/,$p' "$WORK/cluster.log" | sed 's/^/  /'
  else
    say "no cluster process running"
  fi
  # Whatever a dead cluster process left: the sweep removes objects whose
  # process is gone.
  if [[ -x $BIN/demo ]]; then
    "$BIN/demo" sweep
  else
    go run ./dev/demo sweep
  fi

  if [[ -n $run_id ]]; then
    # The demo's image, if up stopped before it removed it.
    docker image rm "swarmsec/swarmsec:demo-$run_id" >/dev/null 2>&1 || true
    local left
    left=$(
      docker ps -aq --filter "label=swarmsec.test.run=$run_id"
      docker volume ls -q --filter "label=swarmsec.test.run=$run_id"
      docker network ls -q --filter "label=swarmsec.test.run=$run_id"
      docker image ls -q "swarmsec/swarmsec:demo-$run_id"
      ls -d /sys/fs/cgroup/swarmsec-e2e-"$run_id" /sys/fs/cgroup/*/swarmsec-e2e-"$run_id" 2>/dev/null || true
    )
    if [[ -n $left ]]; then
      say "left on the engine:"
      say "$left"
      exit 1
    fi
    say "nothing of cluster $run_id is left (containers, volumes, networks, images, cgroups)"
  fi
  rm -rf "$WORK"
  say "removed $WORK; make demo-down took $((SECONDS - start)) s"
}

case "${1:-}" in
up) up ;;
down) down ;;
*)
  echo "usage: $0 up|down" >&2
  exit 2
  ;;
esac
