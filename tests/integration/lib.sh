# Helpers shared by the integration scripts (sourced, not run).

# Prints a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for_health BRAID ADDR PID LOG: waits up to 20 s for braidd to answer.
wait_for_health() {
  local braid=$1 addr=$2 pid=$3 log=$4
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "braidd exited early:"; cat "$log"; return 1
    fi
    if "$braid" --address "$addr" --timeout 500 health >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  echo "braidd did not answer health in 20 s:"; cat "$log"; return 1
}
