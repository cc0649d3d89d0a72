#!/usr/bin/env bash
# Makes sure a Docker Engine answers on this machine: installs Debian's
# docker.io and starts dockerd when none does.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
# An engine named elsewhere is not this machine's to start: a dockerd
# started here would not be the one asked for.
for var in DOCKER_HOST DOCKER_CONTEXT; do
  if [[ -n ${!var:-} ]]; then
    echo "ensure-docker: the engine $var=${!var} names does not answer; not starting one here (unset $var to use this machine's engine)" >&2
    exit 1
  fi
done
if ! command -v dockerd >/dev/null 2>&1; then
  echo "ensure-docker: installing docker.io" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io iptables >/dev/null
fi
echo "ensure-docker: starting dockerd" >&2
nohup dockerd >/var/log/swarmsec-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "ensure-docker: dockerd did not answer within 60s; see /var/log/swarmsec-dockerd.log" >&2
exit 1
