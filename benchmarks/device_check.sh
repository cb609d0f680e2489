#!/usr/bin/env bash
# The device check on a bare GPU image: install the carried wheels (wheels/, see
# benchmarks/device_requirements.txt) without an index, then run benchmarks/device_check.py.
#   bash benchmarks/device_check.sh OUT_DIR [device_check.py options...]
# e.g. through the device tool: carry ["wheels"], command
#   bash benchmarks/device_check.sh $OUT --profile
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash benchmarks/device_check.sh OUT_DIR [options]}
shift
site=${DEVICE_CHECK_SITE:-/tmp/device_check_site}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" wheels/*.whl
export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm,driver_version --format=csv 2>/dev/null || true
# 8 minutes at most: the script's own budget ends its sections in time; timeout is the backstop
exec timeout --signal=TERM --kill-after=10 "${DEVICE_CHECK_TIMEOUT:-470}" \
    python3 benchmarks/device_check.py --out "$out" "$@"
