#!/usr/bin/env bash
# Every GPU measurement of issue 15 in one go, sized for 8 minutes on one H100/H200-class GPU.
#
#   bash benchmarks/gpu_checks.sh            # results under $OUT (default benchmarks/results/gpu)
#   DRY_RUN=1 bash benchmarks/gpu_checks.sh  # print the commands only
#
# 1. The paper recipe step (MiT-B5, 1024x1024 HR context -> 512 LR, 512 detail; batch 2
#    source + 2 target, synthetic tensors): the supervised HRDA step and the full
#    self-training Trainer.step, fp32 and bf16, channels_last: s/it, peak memory, TFLOP/s,
#    its share of the measured matmul/conv peaks and of the data-sheet bf16 peak
#    (PEAK_TFLOPS, default 989: H100/H200 SXM dense bf16). The paper: 2.9 s/it, 22.5 GB.
# 2. The default `kedro run --pipeline=uda` in a fresh project copy: wall time per node.
# 3. The naive full-resolution step (bf16): HRDA's cost as a share of it.
# 4. torch.compile on the supervised HRDA step (bf16): first step (compilation) and steady
#    step against eager.
# Each part has its own time limit, so one that overruns cannot take the others with it.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu}"
PEAK_TFLOPS="${PEAK_TFLOPS:-989}"
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" KEDRO_DISABLE_TELEMETRY=1
# A dry run writes nothing: its machine line would pass for a GPU result.
if [[ -n "${DRY_RUN:-}" ]]; then MACHINE=/dev/null; else mkdir -p "$OUT"; MACHINE="$OUT/machine.txt"; fi

run() {  # run LIMIT_S NAME CMD...: time-limited, output to $OUT/NAME.log, never fatal
  local limit=$1 name=$2
  shift 2
  echo "== $name (limit ${limit}s): $*"
  if [[ -n "${DRY_RUN:-}" ]]; then return 0; fi
  local start=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "   rc=$? in $((SECONDS - start)) s; tail:"
  tail -n 14 "$OUT/$name.log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true; } \
  | tee "$MACHINE"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
  | tee -a "$MACHINE"

# 1. Paper recipe, fp32 and bf16 (4 workers: hrda and uda_hrda per precision), ~2 min.
run 200 paper_step "$PY" benchmarks/train_step.py --preset paper --device cuda \
  --precision fp32,bf16 --channels-last --variants hrda --uda --steps 6 --warmup 3 \
  --peak-tflops "$PEAK_TFLOPS" --out "$OUT/train_step_paper.csv"

# 2. The default uda run (embedded benchmark, MiT-nano) on the GPU, fresh project, ~2.5 min.
# Its own time limit under the part's, so that an overrun still reports the nodes it ran;
# --echo keeps kedro's progress in the log.
run 240 uda_run "$PY" benchmarks/end_to_end.py --device cuda --echo --timeout 225 \
  --out "$OUT/end_to_end_uda_gpu.csv"

# 3. The naive full-resolution steps (the whole 1024 context through the network), bf16,
# against part 1's bf16 HRDA rows: HRDA's time and memory as a share of naive HR's, ~1 min.
run 100 naive_step "$PY" benchmarks/train_step.py --preset paper --device cuda \
  --precision bf16 --channels-last --variants naive_hr --uda --steps 6 --warmup 3 \
  --peak-tflops "$PEAK_TFLOPS" --out "$OUT/train_step_paper_naive.csv"

# 4. torch.compile against eager, bf16, the supervised HRDA step, ~2 min. Last: compilation
# time is the least predictable part.
run 140 paper_compile "$PY" benchmarks/train_step.py --preset paper --device cuda \
  --precision bf16 --channels-last --variants hrda --no-uda --steps 6 --warmup 2 --compile \
  --peak-tflops "$PEAK_TFLOPS" --out "$OUT/train_step_paper_compile.csv"

echo "results in $OUT"
