#!/usr/bin/env bash
# The wheels that the GPU machine's Python (3.12, x86-64, no network there) needs and its image
# lacks: pydantic and what pydantic needs beyond the image's typing-extensions, at the versions
# installed here. Run it where there is network; copy the folder .whl/ (ignored by git) along
# with the checkout, and experiments/gpu_bench.sh installs what is in it into /tmp/site.
# About 2.5 MB.
#
#   bash experiments/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
pins=$(python3 - <<'PYEOF'
from importlib.metadata import version
print(" ".join(f"{d}=={version(d)}" for d in
               ("pydantic", "pydantic-core", "annotated-types", "typing-inspection")))
PYEOF
)
plat=()
for p in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_28_x86_64; do
    plat+=(--platform "$p")
done
# shellcheck disable=SC2086  # one argument per pin
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${plat[@]}" -d .whl $pins
ls -l .whl
