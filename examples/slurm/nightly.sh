#!/bin/bash
# Queue one night's embed array and the build after it; for cron, e.g.
#
#   0 1 * * *  cd /shared/simsite && SIMSITE_SHARDS=64 examples/slurm/nightly.sh >>nightly.log 2>&1
#
# Run it in the folder that holds site-config.toml (the jobs start in the folder they were
# submitted from). It queues nothing while last night's jobs are still queued or running,
# so a slow night does not pile up work behind it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${SIMSITE_SHARDS:?set SIMSITE_SHARDS to the number of shards, e.g. 64}"
export SIMSITE_SHARDS
left=$(squeue --noheader --user="${USER:-$(id -un)}" --name=simsite-embed,simsite-build --format=%i)
if [[ -n $left ]]; then
    echo "$(date -Is) last night's simsite jobs are still queued or running ($(echo $left)); nothing queued" >&2
    exit 1
fi
jid=$(sbatch --parsable --array=0-$((SIMSITE_SHARDS - 1)) "$here/embed-array.sbatch")
jid=${jid%%;*}      # --parsable prints "jobid" or "jobid;cluster"
# afterany: the build runs once every shard has ended, failed ones included, and embeds
# what they left. For "no site tonight unless every shard succeeded" use
# --dependency=afterok:$jid --kill-on-invalid-dep=yes: a failed shard then cancels the build
# instead of leaving it pending for ever.
bid=$(sbatch --parsable --dependency=afterany:"$jid" "$here/build.sbatch")
echo "$(date -Is) queued embed array ${jid} (${SIMSITE_SHARDS} shards) and build ${bid%%;*}"
