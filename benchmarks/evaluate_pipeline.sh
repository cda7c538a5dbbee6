#!/bin/bash
# Every evaluation of a trained pipeline (the numbers the open issues ask for), as JSON.
# Usage: benchmarks/evaluate_pipeline.sh [RUNS_ROOT (default runs)] [OUT_DIR (default benchmarks/results)] [VSP_DIR]
# (VSP_DIR: a VSP checkout or example set, default ../shared/vsp-examples). Printed tables go to OUT_DIR/logs/.
# Perception is measured on world/final: the understanding branch users get (lang may have refined it after mbaq).
# About 20 minutes on 2 CPU cores (3-4 of them compiling for the compiled benchmark). Do not run it beside training: both slow down several-fold.
set -eux
cd "$(dirname "$0")/.."
M=${1:-runs}; O=${2:-benchmarks/results}; VSP=${3:-../shared/vsp-examples}; L=$O/logs; mkdir -p "$L"
LW=.venv/bin/latentum-world
$LW eval world-model --model $M/world/final --generated 100 --horizon 16 --policy random --json $O/eval_world_model_random.json > "$L/world.txt" 2>&1
.venv/bin/python benchmarks/env_agreement.py --model $M/world/final --maps 500 --num-envs 100 --out $O/env_agreement.json > "$L/env.txt" 2>&1
.venv/bin/python benchmarks/one_step_codes.py --model $M/world/final --readout --out $O/one_step_codes.json > "$L/codes.txt" 2>&1
$LW eval decoder --model $M/world/final --generated 100 --json $O/decoder.json > "$L/decoder.txt" 2>&1
for f in continuous quantized; do
  $LW eval perception --vsp "$VSP" --model $M/world/final --features $f --generated 100 --json $O/eval_perception_$f.json > "$L/perc_$f.txt" 2>&1
done
rm -rf "$O/vspgen"; for t in task1 task2 task3 task4; do $LW vsp generate --task $t --count 25 --seed 7 --out "$O/vspgen" > /dev/null 2>&1; done
for f in continuous quantized; do
  $LW eval perception --vsp "$O/vspgen" --model $M/world/final --features $f --generated 0 --json $O/eval_perception_vspgen_$f.json > "$L/percgen_$f.txt" 2>&1
done
.venv/bin/python benchmarks/bench_world_model.py --model $M/world/final --threads 2 --out $O/world_model.json > "$L/bench.txt" 2>&1
.venv/bin/python benchmarks/bench_world_model.py --model $M/world/final --threads 2 --compile --out $O/world_model_compiled.json > "$L/bench_compiled.txt" 2>&1
rm -rf "$O/vspgen"
echo "all evaluations written to $O"
