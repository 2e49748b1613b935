#!/usr/bin/env bash
# int8 vs float32 on a second CPU that has no TensorFlow: one short run, figures back for the merge.
#
# Prepare here (TensorFlow machine), in the repository root, into a folder git ignores and `carry` names:
#   echo /carry/ >> .git/info/exclude
#   python benchmarks/int8_speed.py --pack carry/int8_models --max-mib 22   (V3-Small; --versions v3-large next)
#   pip download ai-edge-litert==2.3.0 numpy --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#       -d carry/wheels      (about 37 MB: with the 22 MiB of models, under the device tool's 64 MiB carry)
# Run there (the device tool: carry ["carry"], timeout leaving room for a rerun):
#   bash benchmarks/device_int8.sh carry/int8_models carry/wheels "$OUT" [ROUNDS]
# Then here:
#   cp <fetched>/int8_speed_<cpu>.csv results/ &&
#   python benchmarks/int8_speed.py --merge results/int8_speed.csv results/int8_speed_<cpu>.csv
#
# It installs the carried wheels offline into a fresh virtual environment, then
# benchmarks/int8_timing.py times every packed model with mnbench's host worker (what `mnbench bench` runs)
# and Google's benchmark_litert_model interleaved, at 1 and 2 threads, and profiles V3-Small per block
# (what `mnbench profile --by block` runs). It writes $OUT/int8_speed_<cpu>.csv, ..._profile.csv, cpu.txt
# and log.txt.
set -euo pipefail

models=${1:?usage: device_int8.sh MODELS_DIR WHEELS_DIR OUT_DIR [ROUNDS]}
wheels=${2:?usage: device_int8.sh MODELS_DIR WHEELS_DIR OUT_DIR [ROUNDS]}
out=${3:?usage: device_int8.sh MODELS_DIR WHEELS_DIR OUT_DIR [ROUNDS]}
rounds=${4:-5}
[ -f "$models/manifest.json" ] || { echo "device_int8.sh: no manifest.json in $models" >&2; exit 2; }
ls "$wheels"/ai_edge_litert-*.whl >/dev/null 2>&1 || { echo "device_int8.sh: no ai_edge_litert wheel in $wheels" >&2; exit 2; }
mkdir -p "$out"

python=${PYTHON:-python3.12}
command -v "$python" >/dev/null || python=python3
scratch=$(mktemp -d)
# A virtual environment if this Python can make one, else the wheels installed into a folder on PYTHONPATH.
if "$python" -m venv "$scratch/venv" 2>/dev/null; then
    py=$scratch/venv/bin/python
    "$py" -m pip install --quiet --no-index --find-links "$wheels" ai-edge-litert numpy 2>&1 | tee "$out/log.txt"
    site=
else
    py=$python
    site=$scratch/site
    "$py" -m pip install --quiet --no-index --find-links "$wheels" --target "$site" ai-edge-litert numpy 2>&1 \
        | tee "$out/log.txt"
fi
export PYTHONPATH=$PWD${site:+:$site} PYTHONUNBUFFERED=1
"$py" -c "import ai_edge_litert.interpreter" || { echo "device_int8.sh: LiteRT did not install" >&2; exit 1; }

name=$(grep -m1 -E '^model name' /proc/cpuinfo | cut -d: -f2 | tr -cs 'A-Za-z0-9' '-' | sed 's/^-//; s/-$//' | cut -c1-40)
{ grep -m1 -E '^model name' /proc/cpuinfo; grep -m1 -E '^flags' /proc/cpuinfo; nproc; uptime; "$py" --version
  "$py" -c "import importlib.metadata as m; print('ai-edge-litert', m.version('ai-edge-litert'))"; } > "$out/cpu.txt"
"$py" benchmarks/int8_timing.py time "$models/manifest.json" --rounds "$rounds" \
    --out "$out/int8_speed_${name:-cpu}.csv" 2>&1 | tee -a "$out/log.txt"
