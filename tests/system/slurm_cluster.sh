#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the slow suite (tests/test_slurm_cluster.py) and for trying the
# cluster path on a laptop (docs/cluster.md):
#
#   sudo tests/system/slurm_cluster.sh start    # prints: export SLURM_CONF=<state dir>/slurm.conf
#   export SLURM_CONF=/tmp/lit-vision-slurm/slurm.conf; sinfo; sacct
#   sudo tests/system/slurm_cluster.sh stop     # stops exactly the daemons `start` started (their PIDs)
#   tests/system/slurm_cluster.sh status
#
# Debian's slurm-wlm 22.05 + munge, with job accounting in slurmdbd backed by a private MariaDB, so `sacct`
# answers (submitit polls it; without accounting it prints "Bypassing sacct error" on every poll). One node with
# this machine's CPUs and memory, one partition `cpu`; the same MariaDB also holds database `optuna` (user and
# password optuna) for lit_vision.tune studies shared by SLURM workers. Every file lives under the state dir
# (LIT_VISION_SLURM_DIR, default /tmp/lit-vision-slurm): configs, logs, spool, the database;
# nothing is written to /etc (munged, if not running already, uses
# its default socket under /run/munge). Clients find the cluster through SLURM_CONF. Needs root (the daemons run as root,
# jobs run as the submitting user); missing packages are installed with apt-get (tests/system/install_deps.sh).
set -euo pipefail

DIR="${LIT_VISION_SLURM_DIR:-/tmp/lit-vision-slurm}"
HERE="$(cd "$(dirname "$0")" && pwd)"
CTLD_PORT="${LIT_VISION_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${LIT_VISION_SLURMD_PORT:-6818}"
DBD_PORT="${LIT_VISION_SLURMDBD_PORT:-6819}"
DB_PORT="${LIT_VISION_SLURM_DB_PORT:-3307}"
CLUSTER=litvision
PIDS="$DIR/pids"  # "<name> <pid>" per daemon this script started

die() { echo "slurm_cluster.sh: $*" >&2; exit 1; }
say() { echo "slurm_cluster.sh: $*" >&2; }

wait_for() {  # wait_for <seconds> <what> <command...>
  local limit=$1 what=$2; shift 2
  for _ in $(seq $((limit * 5))); do
    if timeout 5 "$@" > /dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "$what did not come up within ${limit}s; see the logs in $DIR/log"
}

record() { echo "$1 $2" >> "$PIDS"; }

pid_of() { [ -f "$1" ] && cat "$1"; }

write_configs() {
  local host cpus mem_mb
  host="$(hostname -s)"
  cpus="$(nproc)"
  mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
  mkdir -p "$DIR"/{log,state,spool,run,db}
  cat > "$DIR/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# no cgroups: works in containers and VMs without delegated cgroup controllers
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# job accounting (sacct): slurmdbd on this machine
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
JobCompType=jobcomp/none
# SLURM's default 30 s between SIGTERM and SIGKILL (a requeued step needs a few to exit cleanly: with 5 s a
# loaded machine killed it mid-exit and submitit read the job as FAILED), and a quick scheduler
KillWait=30
MinJobAge=60
SchedulerParameters=sched_interval=2
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  cat > "$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$DIR/slurmdbd.conf"
}

start_munge() {
  # munge's default socket: the clients' connection to slurmdbd (sacct, sacctmgr) ignores slurm.conf's AuthInfo.
  # A munged already answering there (Debian's service) is used as it is, and not stopped by `stop`.
  if munge -n 2> /dev/null | unmunge > /dev/null 2>&1; then
    say "using the munged already running"; return 0
  fi
  [ -f "$DIR/run/munge.key" ] || { dd if=/dev/urandom of="$DIR/run/munge.key" bs=1024 count=1 2> /dev/null;
                                   chmod 400 "$DIR/run/munge.key"; }
  mkdir -p /run/munge
  munged --force --key-file="$DIR/run/munge.key" --pid-file="$DIR/run/munged.pid" \
         --log-file="$DIR/log/munged.log" --seed-file="$DIR/run/munged.seed"
  wait_for 10 munged test -s "$DIR/run/munged.pid"
  record munged "$(pid_of "$DIR/run/munged.pid")"
}

start_db() {
  if [ ! -d "$DIR/db/mysql" ]; then
    mariadb-install-db --user=root --datadir="$DIR/db" --auth-root-authentication-method=normal \
                       --skip-test-db > "$DIR/log/mariadb-install.log" 2>&1
  fi
  mariadbd --user=root --datadir="$DIR/db" --port="$DB_PORT" --bind-address=127.0.0.1 \
           --socket="$DIR/run/mysql.sock" --pid-file="$DIR/run/mariadbd.pid" --log-error="$DIR/log/mariadb.log" \
           --innodb-buffer-pool-size=64M --skip-log-bin > /dev/null 2>&1 &
  record mariadbd $!
  wait_for 30 MariaDB mariadb --socket="$DIR/run/mysql.sock" -uroot -e "select 1"
  mariadb --socket="$DIR/run/mysql.sock" -uroot -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
    CREATE DATABASE IF NOT EXISTS optuna;
    CREATE USER IF NOT EXISTS 'optuna'@'127.0.0.1' IDENTIFIED BY 'optuna';
    GRANT ALL ON optuna.* TO 'optuna'@'127.0.0.1';"
}

start() {
  [ "$(id -u)" -eq 0 ] || die "needs root (it starts munged, slurmdbd, slurmctld and slurmd as root)"
  if [ -s "$PIDS" ] && status > /dev/null 2>&1; then
    say "already running"; echo "export SLURM_CONF=$DIR/slurm.conf"; return 0
  fi
  bash "$HERE/install_deps.sh"
  for cmd in munged slurmctld slurmd slurmdbd mariadbd sacctmgr; do
    command -v "$cmd" > /dev/null || die "$cmd is not installed (install_deps.sh installs it as root with apt-get)"
  done
  rm -f "$PIDS"
  trap 'code=$?; if [ $code -ne 0 ]; then say "start failed: stopping what it started"; stop; fi' EXIT
  write_configs
  export SLURM_CONF="$DIR/slurm.conf"
  start_munge
  start_db
  slurmdbd  # reads slurmdbd.conf next to $SLURM_CONF
  wait_for 30 slurmdbd test -s "$DIR/run/slurmdbd.pid"
  record slurmdbd "$(pid_of "$DIR/run/slurmdbd.pid")"
  wait_for 30 "slurmdbd's database" sacctmgr -n list cluster
  sacctmgr -i add cluster "$CLUSTER" > /dev/null 2>&1 || true
  slurmctld -f "$DIR/slurm.conf"
  wait_for 30 slurmctld test -s "$DIR/run/slurmctld.pid"
  record slurmctld "$(pid_of "$DIR/run/slurmctld.pid")"
  slurmd -f "$DIR/slurm.conf"
  wait_for 30 slurmd test -s "$DIR/run/slurmd.pid"
  record slurmd "$(pid_of "$DIR/run/slurmd.pid")"
  wait_for 60 "the node (sinfo: idle)" bash -c "sinfo -h -o %t | grep -q idle"
  wait_for 30 "sacct" sacct -n -X
  say "running: $(sinfo -h -o '%P %D node(s) %c CPUs %t')"
  echo "export SLURM_CONF=$DIR/slurm.conf"
  trap - EXIT
}

stop() {
  [ -f "$PIDS" ] || { say "nothing to stop (no $PIDS)"; return 0; }
  # the reverse order of starting; only the PIDs this script recorded
  tac "$PIDS" | while read -r name pid; do
    if kill -0 "$pid" 2> /dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.2; done
      if kill -0 "$pid" 2> /dev/null; then say "$name ($pid) ignored SIGTERM: SIGKILL"; kill -9 "$pid"; fi
    fi
  done
  rm -f "$PIDS"
  say "stopped"
}

status() {
  [ -f "$PIDS" ] || { echo "not started"; return 1; }
  local down=0
  while read -r name pid; do
    if kill -0 "$pid" 2> /dev/null; then echo "$name $pid running"; else echo "$name $pid not running"; down=1; fi
  done < "$PIDS"
  return $down
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
