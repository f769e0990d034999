#!/usr/bin/env bash
# Run published-number regression suites as one SLURM job on one GPU node.
#
#   sbatch scripts/slurm_regress.sh                                   # the two 50K-sample DiffiT suites
#   SUITES="adm-ref-256 adm-ref-128" sbatch --time=01:00:00 scripts/slurm_regress.sh
#   SUITES=cifar10 CKPT=/path/to/cifar10.pt sbatch scripts/slurm_regress.sh
#
# Compute nodes are often offline: fetch everything first on a login node (same
# DIFFIT_EVAL_CACHE and HF_HOME as the job):
#   diffit-eval regress --suite NAME --fetch-only      # sample batch and reference of a suite
#   diffit-eval weights fetch inception                # Inception weights for the metrics
#   diffit-eval weights fetch diffit-256               # (and diffit-512) released checkpoints
#   diffit-eval weights fetch sd-vae-ft-ema            # VAE into the Hugging Face cache
# Sampling uses torchrun across the node's GPUs; seeds are per image, so the result does not
# depend on the GPU count.
#
#SBATCH --job-name=diffit-regress
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --mem=256G
#SBATCH --time=2-00:00:00
#SBATCH --output=%x-%j.out

set -euo pipefail

SUITES=${SUITES:-"diffit-latent-256 diffit-latent-512"}
GPUS=${GPUS:-${SLURM_GPUS_ON_NODE:-8}}
CKPT=${CKPT:-}
PYTHON=${PYTHON:-python}
OUT=${OUT:-runs/regress}
REPORTS=${REPORTS:-reports/slurm-${SLURM_JOB_ID:-local}}
export DIFFIT_EVAL_CACHE=${DIFFIT_EVAL_CACHE:-$HOME/.cache/diffit-eval}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
mkdir -p "$REPORTS"
echo "suites: $SUITES | GPUs: $GPUS | cache: $DIFFIT_EVAL_CACHE | host: $(hostname)"
"$PYTHON" -c "import torch; print('CUDA devices:', torch.cuda.device_count())"

status=0
for suite in $SUITES; do
    extra=()
    case "$suite" in
        diffit-latent-*|cifar10|ffhq64)
            extra+=(--launcher "torchrun --standalone --nproc_per_node $GPUS") ;;
    esac
    if [ -n "$CKPT" ]; then extra+=(--ckpt "$CKPT"); fi
    rc=0
    srun --ntasks=1 "$PYTHON" -m diffit_eval regress --suite "$suite" \
        --workdir "$OUT/$suite" --json "$REPORTS/$suite.json" "${extra[@]}" || rc=$?
    echo "suite $suite: exit $rc (0 pass, 1 regression, 2 could not run)"
    # A regression (1) outranks could-not-run (2) in the job's exit status.
    if [ "$rc" -eq 1 ] || { [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; }; then status=$rc; fi
done

metrics=("$OUT"/*/metrics.json)
if [ -e "${metrics[0]}" ]; then
    "$PYTHON" -m diffit_eval table "${metrics[@]}" --dataset imagenet --format md | tee "$REPORTS/table.md"
fi
exit "$status"
