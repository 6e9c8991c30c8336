#!/usr/bin/env bash
# CPU time per service while a command runs, from /proc tick counters: which process the work costs.
#
#   loadtest/cpu.sh target/release/turnpike-loadtest --rate 0 --turns 8000
#
# Prints the command's output, then the CPU seconds of each local stack service (deploy/local/stack.sh),
# of the command itself (with its children: the load tool runs the stages in-process), and how busy the
# whole machine was. With `--turns N` in the command, also milliseconds of CPU per turn.
set -euo pipefail
[ $# -gt 0 ] || { sed -n '2,8p' "$0"; exit 2; }

hz=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15+$16+$17}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pid_of() { pgrep -f "turnpike.stack.service=$1" | head -1 || true; }
declare -A PID=([kafka]=$(pid_of kafka) [cassandra]=$(pid_of cassandra) [registry]=$(pid_of apicurio)
  [redis]=$(pgrep -x redis-server | head -1 || true))
declare -A T0
for s in "${!PID[@]}"; do T0[$s]=$([ -n "${PID[$s]}" ] && ticks "${PID[$s]}" || echo 0); done
machine() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8, $5+$6}' /proc/stat; }
read -r total0 idle0 < <(machine)

"$@" &
cmd=$!
own=0
# The command's own ticks (children included once they are reaped), sampled until it exits.
while kill -0 "$cmd" 2>/dev/null; do
  t=$(ticks "$cmd")
  [ "$t" != 0 ] && own=$t
  sleep 0.2
done
rc=0
wait "$cmd" || rc=$?
read -r total1 idle1 < <(machine)

turns=0
args=("$@")
for i in "${!args[@]}"; do [ "${args[$i]}" = --turns ] && turns=${args[$((i + 1))]}; done
report() { # name ticks
  if [ "$turns" -gt 0 ]; then
    awk -v n="$1" -v t="$2" -v hz="$hz" -v turns="$turns" \
      'BEGIN { printf "  %-10s %7.1f s  %5.2f ms/turn\n", n, t / hz, t / hz * 1000 / turns }'
  else
    awk -v n="$1" -v t="$2" -v hz="$hz" 'BEGIN { printf "  %-10s %7.1f s\n", n, t / hz }'
  fi
}
echo "CPU while the command ran:"
sum=$own
for s in kafka cassandra redis registry; do
  [ -n "${PID[$s]}" ] || continue
  d=$(($(ticks "${PID[$s]}") - T0[$s]))
  sum=$((sum + d))
  report "$s" "$d"
done
report command "$own"
report all "$sum"
awk -v b=$(((total1 - total0) - (idle1 - idle0))) -v t=$((total1 - total0)) \
  'BEGIN { printf "  machine busy %.0f%% of %.1f core-seconds\n", 100 * b / t, t / 100 }'
exit $rc
