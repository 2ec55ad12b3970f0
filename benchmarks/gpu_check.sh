#!/usr/bin/env bash
# The GPU figures of issues 60 and 76 in one run (its steps' limits add up to 5 m 20 s), from the
# repo root:
#
#   OUT=/some/folder bash benchmarks/gpu_check.sh
#
# 0. models: every model of tests/unit/models/table.py on the device against the CPU, in
#    float32 and in bfloat16 (the largest difference over the output's scale; a row that cannot
#    be built there, braindecode's without braindecode, is listed with why);
# 1. study: benchmarks/study_vs_naive.py --device cuda --preset paper --batch-conditions
#    (batched_equal, runner / naive and runner / bound per form);
# 2. timed: what the "auto" rule (timed on a GPU) picked for the paper preset's subject, and
#    each form's time;
# 3. tests: the tests that need a GPU (tests/unit/test_devices.py), where pytest is installed.
# Each step has its own time limit and output; one failing does not stop the others. The
# figures go to $OUT/gpu_check.json and $OUT/gpu_check.md, each step's lines and errors to
# $OUT/<step>.jsonl and $OUT/<step>.err. GPU_CHECK_TINY=1 runs them all at a tiny size on the
# CPU (a check of the script itself, in a few minutes); PYTHON picks the interpreter (python3).
# Its FlexAttention steps went with FlexAttention (issue 74; docs/guide/scale-out.md keeps
# their figures).
set -u
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
if [ "${GPU_CHECK_TINY:-0}" = 1 ]; then
  STUDY_ARGS=(--quick --device cpu --batch-conditions)
  TIMED_ARGS=(cpu demo 24 3)
  LIMITS=(240 120 120 240)
  DEVICE=cpu
else
  STUDY_ARGS=(--device cuda --preset paper --batch-conditions)
  TIMED_ARGS=(cuda paper 256 5)
  LIMITS=(170 60 50 40)
  DEVICE=cuda
fi

step() {  # step NAME LIMIT_S COMMAND...: its stdout to NAME.jsonl, its rc echoed
  local name=$1 limit=$2
  shift 2
  echo "== $(date +%T) step $name (at most ${limit} s): $*"
  timeout --kill-after=10 "$limit" "$@" 2> "$OUT/$name.err" | tee "$OUT/$name.jsonl"
  local rc=${PIPESTATUS[0]}
  echo "== $(date +%T) step $name: rc $rc$([ $rc = 124 ] && echo ' (timed out)')"
  echo "$rc" > "$OUT/$name.rc"
  [ $rc = 0 ] || tail -n 5 "$OUT/$name.err"
}

"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else '')" | tee "$OUT/env.txt"

step models "${LIMITS[3]}" "$PY" - "$DEVICE" <<'EOF'
"""Every model of the test table on the device against the CPU: float32 and bfloat16."""
import json, sys, warnings
import torch
sys.path.insert(0, ".")
from tests.unit.models import table

device = torch.device(sys.argv[1])
warnings.simplefilter("ignore")
for name in table.names():
    row = {"model": name, "tier": table.TABLE[name].tier}
    try:
        model = table.make(name).eval()
        x = model.example_input(4)
        with torch.inference_mode():
            ref = model(x).double()
        scale = float(ref.abs().max()) or 1.0
        for dtype, key in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
            model.to(device, dtype)  # outside inference mode: its buffers stay usable
            with torch.inference_mode():
                out = model(x.to(device, dtype)).double().cpu()
            row[key] = float((out - ref).abs().max()) / scale
            model.to("cpu", torch.float32)
    except Exception as exc:  # reported, not hidden: the row says why
        row["error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
    print(json.dumps(row))
EOF
step study "${LIMITS[0]}" "$PY" benchmarks/study_vs_naive.py "${STUDY_ARGS[@]}"
step timed "${LIMITS[1]}" "$PY" - "${TIMED_ARGS[@]}" <<'EOF'
"""The study runner under each rule on the study benchmark's first subject: the form the
rule picked, why, its timing, and seconds per run (one warm-up run first)."""
import json, sys, time
sys.path.insert(0, "benchmarks")
import torch
import study_vs_naive as bench
from emg_lens.studies import StudySpec, run_study

device, preset, windows, layers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
init = bench.SIZES[preset]["init_range"]
models = {1: bench._subject(1, preset, windows, layers, init, torch.device(device))}
spec = StudySpec.from_dict(bench.SPEC)
for rule in ("auto", "timed", "broadcast", "stacked", "auto"):
    run_study(spec, models=models, batch_size=256, progress=False, condition_form=rule)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = run_study(spec, models=models, batch_size=256, progress=False, condition_form=rule)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = round(time.perf_counter() - start, 4)
    print(json.dumps({"rule": rule, "s_run": seconds, **result.condition_forms[1]}))
EOF
if "$PY" -c "import pytest" 2> /dev/null; then
  step tests "${LIMITS[2]}" "$PY" -m pytest -q -p no:cacheprovider tests/unit/test_devices.py
fi

"$PY" - "$OUT" <<'EOF'
"""Gather the steps' JSON lines into gpu_check.json and a markdown table."""
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
steps = {}
for name in ("models", "study", "timed"):
    path = out / f"{name}.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    rc = (out / f"{name}.rc").read_text().strip() if (out / f"{name}.rc").exists() else "?"
    steps[name] = {"rc": rc, "rows": rows}
env = (out / "env.txt").read_text().strip() if (out / "env.txt").exists() else ""
(out / "gpu_check.json").write_text(json.dumps({"env": env, **steps}, indent=2) + "\n")
md = [f"# GPU check (issues 60, 76)\n\n{env}\n"]
md.append("| device | preset | runner / naive | runner / bound | batched_equal |")
md.append("|---|---|---|---|---|")
for r in steps["study"]["rows"]:
    ratios = [r.get(k) or {} for k in ("speedup_vs_naive", "runner_vs_lower_bound")]
    ratios = [f"{q.get('median')} ({q.get('min')}-{q.get('max')})" for q in ratios]
    md.append(f"| {r.get('device')} | {r.get('preset')} | {' | '.join(ratios)} | "
              f"{r.get('batched_equal')} |")
md.append("\n## 0. Every model on the device against the CPU (max diff / scale)\n")
md.append("| model | tier | float32 | bfloat16 | error |\n|---|---|---|---|---|")
for r in steps["models"]["rows"]:
    md.append(f"| {r['model']} | {r['tier']} | {r.get('f32', '')} | {r.get('bf16', '')} | "
              f"{r.get('error', '')} |")
md.append(f"\nrc {steps['models']['rc']}\n")
md.append("## 1. study_vs_naive, paper preset, both forms\n")
keys = ("batched_equal", "batched_logits_max_diff", "s_runner", "s_naive", "s_lower_bound",
        "speedup_vs_naive", "runner_vs_lower_bound", "s_runner_broadcast", "s_runner_stacked",
        "speedup_vs_naive_broadcast", "speedup_vs_naive_stacked", "broadcast_vs_lower_bound",
        "stacked_vs_lower_bound", "stacked_vs_broadcast", "runner_form", "breakdown_s",
        "distinct_layer_evals")
for r in steps["study"]["rows"]:
    md += [f"- {k}: `{json.dumps(r.get(k))}`" for k in keys]
md.append(f"\nrc {steps['study']['rc']}\n\n## 2. What each rule ran\n")
md.append("| rule | form | reason | s per condition | s per run |\n|---|---|---|---|---|")
for r in steps["timed"]["rows"]:
    timing = {k[16:]: v for k, v in r.items() if k.startswith("s_per_condition_")}
    md.append(f"| {r['rule']} | {r['form']} | {r['reason']} | {timing} | {r['s_run']} |")
md.append(f"\nrc {steps['timed']['rc']}\n")
tests = out / "tests.jsonl"
if tests.exists():
    md.append(f"## 3. tests/unit/test_devices.py\n\n{tests.read_text().strip()[-600:]}\n")
(out / "gpu_check.md").write_text("\n".join(md))
print((out / "gpu_check.md").read_text())
EOF
