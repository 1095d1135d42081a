#!/usr/bin/env bash
# One prepared run on a machine with an NVIDIA GPU. Installs nothing (it uses the venv that is
# there, or $PY); every step runs even if an earlier one failed, and each writes its own JSON.
#
#   bash bench/gpu.sh                      (summary: runs/bench-gpu/summary.json)
#   OUT=/tmp/g ROUNDS=5 bash bench/gpu.sh
#   DEVICE=cpu QUICK=1 bash bench/gpu.sh    (a dry run of the script itself, on a CPU)
#
# Steps: the tests marked `cuda` (the live monitor's among them: no device read between its checks);
# the demo training step at batch 128 and 1024, without and with torch.compile (contenders of
# bench/train_step.py, including the sparse first layer, which is not the GPU default); the HVP
# and top-eigenvalue (Lanczos vs PyHessian) timing; the live monitor's overhead on the demo's SF
# and SAST runs (bench/monitor_overhead.py, default and full presets against --monitor off,
# MON_EPOCHS epochs, MON_ROUNDS rounds: wall-time and self-timed shares); and for the costs at a
# realistic size: the conv training step against its GEMM floor, the floor plus the recurrence's
# memory traffic, snnTorch and SpikingJelly (bench/train_step.py --conv); the live monitor on the
# 3-conv-layer net (bench/monitor_overhead.py --net conv); checks.all on that net and its growth
# with parameters, T and probe size (bench/checks_scale.py --device cuda, with the GPU's peak memory).
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-runs/bench-gpu}
ROUNDS=${ROUNDS:-10}
QUICK=${QUICK:-}
MON_EPOCHS=${MON_EPOCHS:-30}
MON_ROUNDS=${MON_ROUNDS:-3}
mkdir -p "$OUT"
status=0

step() {  # step NAME COMMAND...: run it, keep its output, record its exit code
  local name=$1; shift
  echo "== $name: $*" | tee -a "$OUT/log.txt"
  "$@" >"$OUT/$name.txt" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.txt" | tee -a "$OUT/log.txt"
  echo "$name $rc" >>"$OUT/exit_codes.txt"
  [ "$rc" -eq 0 ] || status=1
}

: >"$OUT/exit_codes.txt"
"$PY" - <<EOF >"$OUT/environment.txt" 2>&1
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0))
EOF
cat "$OUT/environment.txt"
if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device visible to $PY; nothing to run (DEVICE=cpu for a dry run)" >&2
  exit 2
fi
command -v nvidia-smi >/dev/null && nvidia-smi -L >"$OUT/nvidia-smi.txt" 2>&1

if [ "$DEVICE" = cuda ]; then
  step tests_cuda "$PY" -m pytest -q -m cuda tests/unit tests/e2e -p no:cacheprovider
fi

if [ -n "$QUICK" ]; then
  BATCHES="8"; ROUNDS=2; HESS_ARGS=(--batch 8 --hvp-rounds 2 --eigen-rounds 1)
  MON_ARGS=(--epochs 1 --rounds 1 --limit 400)
  CONV_BATCHES="4"; SCALE_ARGS=(--quick); CONV_MON_ARGS=(--epochs 1 --rounds 1 --limit 64)
else
  BATCHES="128 1024"; HESS_ARGS=(--batch 128)
  MON_ARGS=(--epochs "$MON_EPOCHS" --rounds "$MON_ROUNDS")
  CONV_BATCHES="32 256"; SCALE_ARGS=(--timeout 900); CONV_MON_ARGS=(--epochs "$MON_EPOCHS" --rounds 1)
fi
for B in $BATCHES; do
  step "train_step_b$B" "$PY" bench/train_step.py --device "$DEVICE" --batch "$B" --rounds "$ROUNDS" \
    --json "$OUT/train_step_b$B.json"
  step "train_step_b${B}_compile" "$PY" bench/train_step.py --device "$DEVICE" --batch "$B" --rounds "$ROUNDS" \
    --compile --no-libraries --json "$OUT/train_step_b${B}_compile.json"
done
for B in $CONV_BATCHES; do
  step "train_step_conv_b$B" "$PY" bench/train_step.py --conv --device "$DEVICE" --batch "$B" --rounds "$ROUNDS" \
    --json "$OUT/train_step_conv_b$B.json"
done
step checks_scale "$PY" bench/checks_scale.py --device "$DEVICE" "${SCALE_ARGS[@]}" --out "$OUT/checks_scale.json"
step monitor_overhead_conv "$PY" bench/monitor_overhead.py --net conv --methods sf --device "$DEVICE" \
  "${CONV_MON_ARGS[@]}" --json "$OUT/monitor_overhead_conv.json"
step hessian "$PY" bench/hessian.py --device "$DEVICE" "${HESS_ARGS[@]}" --json "$OUT/hessian.json"
step monitor_overhead "$PY" bench/monitor_overhead.py --device "$DEVICE" "${MON_ARGS[@]}" \
  --json "$OUT/monitor_overhead.json"

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
summary = {"exit_codes": dict(line.split() for line in (out / "exit_codes.txt").read_text().splitlines() if line)}
for f in sorted(out.glob("*.json")):
    if f.name != "summary.json":
        summary[f.stem] = json.loads(f.read_text())
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"wrote {out / 'summary.json'}")
for name, res in summary.items():
    if name.startswith("train_step"):
        print(name, {k: round(v["ratio"], 3) for k, v in res["timing"].items()})
    elif name == "hessian":
        e = res["eigen"]
        print(name, "hvp/grad", round(res["hvp"]["ratio"], 3),
              {k: (round(v["median_s"], 3), v["products_max"]) for k, v in e.items() if k != "reference"})
    elif name == "checks_scale":
        print(name, {f"{c['name']}": (round(c.get('total_seconds') or -1, 1), c.get('gpu_peak_mb'), c.get('status'))
                     for c in res["configs"]})
    elif name.startswith("monitor_overhead"):
        print(name, {f"{m} {p}": (f"wall {100 * f['wall_overhead']:+.1f}%", f"self {100 * f['self_timed']:.1f}%")
                     for m, r in res["methods"].items() for p, f in r["presets"].items()})
EOF
exit $status
