#!/bin/bash
# One GPU stage of the default model on a GPU machine with a deadline, in one call: render a large shapes
# cache on its cores, encode it, train the generator from the committed model file with a new
# schedule that ends before a deadline, then pack the generator weights of the final model and
# the two latest snapshots into $OUT (tools/lab/gpu/weights_parts.py; join them here with `join`).
#
#   DEVICE=cuda BUDGET=500 bash tools/lab/gpu/stage.sh      # from the repository root
#
# BUDGET: seconds from the start until training must have ended (the final save and the packing
# take about 40 s more). Rerun on the same machine and it resumes $RUN/checkpoint.pt with the
# data already there. Other knobs: IMAGES, WORKERS, BATCH, LR, SNAP (snapshot minutes), LOGS,
# RUN, DATA, PY (the interpreter tools/py runs; default python3, the machine's own), EXTRA (more
# lab.train_generator flags). A CPU dry run:
#   OUT=/tmp/o RUN=/tmp/r DATA=/tmp/d PY=/usr/bin/python3 IMAGES=400 WORKERS=2 BATCH=8 BUDGET=100 SNAP=0.4 bash tools/lab/gpu/stage.sh
set -u
T0=$(date +%s)
BUDGET=${BUDGET:-500}          # seconds from now until training must have ended
STOP=$((T0 + BUDGET))
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
RUN=${RUN:-/tmp/gpu-run}; DATA=${DATA:-/tmp/shapes-big}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY=${PY:-python3}
export HART_PYTHON="$PY"
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null; nproc;
  $PY -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"; } 2>&1 | tee "$OUT/env.txt"
timeout $((BUDGET + 40)) tools/py lab.train_generator \
  --resume-from checkpoints/hart-shapes-128.pt --tokenizer checkpoints/hart-shapes-128.pt \
  --data "$DATA" --images ${IMAGES:-160000} --workers ${WORKERS:-16} --out "$RUN" \
  --restart-clock --stop-at $STOP --minutes 60 --batch ${BATCH:-256} --lr ${LR:-8e-4} --lr-floor 0.01 --warmup 0.05 \
  --object-weight 3 --form-weights relation=3,count=2 --self-correct 0.3 \
  --binding-weight 2 --binding-margin 0.3 --binding-kinds shapes,count,colours --binding-scales 8 \
  --snapshot-minutes ${SNAP:-2} --checkpoint-minutes 1000 --log-seconds ${LOGS:-20} --threads 4 --device ${DEVICE:-auto} ${EXTRA:-} 2>&1 | tee "$OUT/train.txt"
echo "training exit ${PIPESTATUS[0]} after $(( $(date +%s) - T0 )) s" | tee -a "$OUT/train.txt"
tools/py lab.gpu.weights_parts pack "$RUN" "$OUT" 2>&1 | tee -a "$OUT/train.txt"
ls -la "$OUT"
