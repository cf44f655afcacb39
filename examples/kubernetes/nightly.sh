#!/bin/bash
# One night's run: the embed Job (examples/kubernetes/embed-job.yaml), then the build Job
# (build-job.yaml); for cron, e.g.  0 1 * * *  examples/kubernetes/nightly.sh >>nightly.log 2>&1
#
# - A Job's name is fixed, and `kubectl apply` of a finished Job changes nothing and runs
#   nothing: the previous night's Jobs are deleted first (ttlSecondsAfterFinished deletes
#   them after 12 h anyway). If one is still running, nothing is started (exit 1).
# - The embed Job ends Complete or Failed (an index out of retries, or activeDeadlineSeconds):
#   the build starts either way, since it embeds whatever the shards left. A wait on
#   `condition=complete` alone would sit out its whole timeout after a failure.
# - Exit status: the build Job's (0 when it completed).
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
kc=(kubectl ${NAMESPACE:+--namespace "$NAMESPACE"})

# The Job's state: Complete, Failed, running, or none.
state() {
    local s
    s=$("${kc[@]}" get job "$1" --ignore-not-found \
        -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}|') || return 1
    case "$s" in
        "") echo none ;;
        *Complete\ *) echo Complete ;;
        *Failed\ *) echo Failed ;;
        *) echo running ;;
    esac
}

# Waits until the Job is Complete or Failed (or gone); prints which. An API error is
# retried for 10 minutes.
finish() {
    local s errors=0
    while :; do
        if s=$(state "$1"); then
            errors=0
            [[ $s == running ]] || break
        elif (( ++errors > 20 )); then
            s=unknown
            break
        fi
        sleep "${POLL_S:-30}"
    done
    echo "$s"
}

for job in simsite-embed simsite-build; do
    if [[ $(state $job) == running ]]; then
        echo "$(date -Is) job/$job is still running; nothing started" >&2
        exit 1
    fi
done
"${kc[@]}" delete job simsite-embed simsite-build --ignore-not-found --cascade=foreground --wait

# completions and SIMSITE_SHARDS are the same N written twice (see embed-job.yaml).
nn=$("${kc[@]}" create --dry-run=client -f "$dir/embed-job.yaml" -o \
    jsonpath='{.spec.completions} {.spec.template.spec.containers[0].env[?(@.name=="SIMSITE_SHARDS")].value}')
read -r n shards <<<"$nn"
if [[ -z $n || $n != "$shards" ]]; then
    echo "$(date -Is) embed-job.yaml: completions ($n) and SIMSITE_SHARDS ($shards) differ; nothing started" >&2
    exit 1
fi

"${kc[@]}" create -f "$dir/embed-job.yaml"
embed=$(finish simsite-embed)
if [[ $embed == Failed ]]; then
    failed=$("${kc[@]}" get job simsite-embed -o jsonpath='{.status.failedIndexes}')
    echo "$(date -Is) embed Job Failed (failed shards: ${failed:-none listed, deadline?}); the build embeds what they left"
fi
"${kc[@]}" create -f "$dir/build-job.yaml"
build=$(finish simsite-build)
echo "$(date -Is) embed: $embed, build: $build"
[[ $build == Complete ]]
