#!/bin/bash
# Continual training on a finished demo: its adapter (trained on 1985-2019) continued on a few
# hundred 2020 receipts with replay of its own training data; each model evaluated on an
# early-period (2019) and the later-period (2020) test set.
#   bench/demo/continual.sh DEMO_DIR OUT [NEW_RECEIPTS] [REPLAY] [EPOCHS] [LR]
set -euo pipefail
D=${1:?usage: continual.sh DEMO_DIR OUT [NEW] [REPLAY] [EPOCHS] [LR]}
C=${2:?usage: continual.sh DEMO_DIR OUT [NEW] [REPLAY] [EPOCHS] [LR]}
N=${3:-200}; R=${4:-0.5}; E=${5:-1}; LR=${6:-1e-3}
SMOLT=${SMOLT:-target/release/smolt}
F=retailer,postal_code,timestamp,currency,total,payment_method,card_last4
mkdir -p "$C"
$SMOLT data synth receipts --n 120 --year 2019 --seed 777 --fields $F --out "$C/early-test"
$SMOLT data synth receipts --n "$N" --year 2020 --seed 555 --fields $F --out "$C/new2020"
ev() {
  $SMOLT eval --adapter "$1" --data "$2" --schema "$D/data/schema.json" \
    --eval-config "$D/data/eval.json" --out "$3" -n 120 | grep "mean field"
}
ev "$D/train" "$C/early-test/receipts.jsonl" "$C/before-early"
ev "$D/train" "$D/data/test.jsonl" "$C/before-later"
$SMOLT train --from "$D/train" --data "$C/new2020/receipts.jsonl" --replay "$R" --epochs "$E" \
  --lr "$LR" --out "$C/run"
ev "$C/run" "$C/early-test/receipts.jsonl" "$C/after-early"
ev "$C/run" "$D/data/test.jsonl" "$C/after-later"
$SMOLT data drift "$D/data/train.jsonl" "$D/data/test.jsonl" --out "$C/drift"
