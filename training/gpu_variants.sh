#!/usr/bin/env bash
# Train several encoder variants side by side on one GPU machine, then export each.
#
#   SYNTH=path/to/synth MINUTES=5 bash training/gpu_variants.sh OUTDIR \
#       "gentle:--aug gentle" "reobs:--reobserved-positive 0.5" "longer@ckpt.pt:--aug gentle" ...
#
# Every variant is the wide encoder (stem 24,48, widths 48,96,192), batch 1024, tau 0.1,
# seed 7, on one shared training set: 24,000 synthetic scenes, each galaxy and star observed
# twice (synth's twins), plus the real frames of sample-archive/ and their crops. Each
# variant's extra options follow its name; NAME@CHECKPOINT resumes from that checkpoint.
# OUTDIR/NAME.tar holds its checkpoint, its log and two ONNX exports (model.onnx: the
# encoder's output, as shipped; model-head.onnx: the projection head's). Needs PyTorch,
# onnx, onnxruntime, numpy, Pillow and astropy; SYNTH is a built `synth` example
# (`cargo build --release --example synth`), for a machine without Rust.
set -euo pipefail
out=$1; shift
W=${WORK:-/tmp/simsite-train}
MINUTES=${MINUTES:-5}
SYNTH=${SYNTH:?a built synth example}
common=(--device cuda --workers 16 --synth 24000 --reobserved 1.0 --synth-bin "$SYNTH"
        --batch 1024 --tau 0.1 --stem 24,48 --widths 48,96,192 --steps 100000)
mkdir -p "$W/data" "$out"
t0=$(date +%s)
python3 training/train.py --work "$W/data" "${common[@]}" --prepare-only
echo "data ready in $(( $(date +%s) - t0 )) s"
pids=()
for v in "$@"; do
  name=${v%%:*}; opts=${v#*:}
  from=${name#*@}; name=${name%%@*}   # NAME@CHECKPOINT resumes from that checkpoint
  mkdir -p "$W/$name"
  [ "$from" != "$name" ] && cp "$from" "$W/$name/checkpoint.pt"
  for f in train-data.npz monitor.npz train-files.txt; do ln -sf "$W/data/$f" "$W/$name/$f"; done
  # shellcheck disable=SC2086
  python3 training/train.py --work "$W/$name" "${common[@]}" --minutes "$MINUTES" $opts > "$W/$name.out" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
for v in "$@"; do
  name=${v%%:*}; name=${name%%@*}
  tail -n 3 "$W/$name.out"
  grep precision "$W/$name/log.jsonl" | tail -n 1 | sed "s/^/$name: /"
  if python3 training/export.py --work "$W/$name" --out "$W/$name/model.onnx" > "$W/$name/export.txt" 2>&1; then
    head -n 2 "$W/$name/export.txt"
  else
    cat "$W/$name/export.txt"; status=1
  fi
  python3 training/export.py --work "$W/$name" --head --out "$W/$name/model-head.onnx" > /dev/null 2>&1 || status=1
  tar -C "$W/$name" -cf "$out/$name.tar" checkpoint.pt log.jsonl model.onnx model-head.onnx export.txt 2>/dev/null || status=1
done
exit $status
