#!/usr/bin/env bash
# System packages behind the slow suite's real components: Debian's chromium + chromedriver (the serving page in a
# headless browser, tests/test_serve_browser.py) and slurm-wlm + munge + slurmdbd + mariadb-server (a single-node SLURM cluster with job accounting,
# tests/system/slurm_cluster.sh). Installs what is missing when run as root on a machine with apt-get, as CI does
# (.ci/run); anywhere else it installs nothing and says which tests will skip. Safe to run again: it exits at once
# when everything is there.
set -euo pipefail

need=()
command -v chromium > /dev/null || need+=(chromium)
command -v chromedriver > /dev/null || need+=(chromium-driver)
command -v slurmctld > /dev/null || need+=(slurm-wlm)
command -v munged > /dev/null || need+=(munge)
# job accounting for the test cluster (sacct answers): slurmdbd and the MariaDB it stores into
command -v slurmdbd > /dev/null || need+=(slurmdbd)
command -v mariadbd > /dev/null || need+=(mariadb-server)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get > /dev/null; then
  echo "tests/system/install_deps.sh: not root with apt-get, so not installing: ${need[*]}." \
       "The tests that need them (headless browser, SLURM) will be skipped." >&2
  exit 0
fi
echo "tests/system/install_deps.sh: installing ${need[*]} (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" > /dev/null
