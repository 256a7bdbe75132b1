#!/usr/bin/env bash
# mgit demo, end to end on the real all-MiniLM-L6-v2 (CPU only, offline, a few minutes).
#
#   bash scripts/demo.sh
#
# 1. sets up ./.venv (scripts/setup-venv.sh),
# 2. makes real children of MiniLM by short CPU finetunes (benchmarks/finetune.py),
# 3. imports base, two versions of a full finetune and a head-only finetune into one mgit repo,
# 4. shows the lineage (log --graph), the model lines and the storage stats,
# 5. exports every version again and checks each file's sha256 against the original folder,
# 6. compares the size of .mgit with the raw bytes of the imported folders,
# 7. diffs versions, writes the lineage as an HTML page, and stores one finetune lossily
#    (error bound 1e-4), gated by its own eval accuracy,
# 8. attaches a sentiment-accuracy test to the lineage, runs it on every version (cached per
#    version), and shows the marks in the log, the failing version and where it failed first,
# 9. finetunes MiniLM on a second task and merges it with the sentiment model (TIES), then
#    redoes the merge from its recorded recipe bit for bit,
# 10. makes base v2 (continued training) and rebases every model derived from v1 onto it,
#    retrain-free, each result gated by the sentiment test; shows what moved and what did not.
#
# Environment:
#   MGIT_DEMO_DIR         work folder, recreated (default: /tmp/mgit-demo)
#   MGIT_DEMO_STEPS       finetune steps per stage (default: finetune.py's default)
#   MGIT_DEMO_V2_STEPS    continued-training steps of base v2 (default: 50)
#   MGIT_DEMO_SKIP_SETUP  set to 1 to use the existing .venv as it is
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

if [ "${MGIT_DEMO_SKIP_SETUP:-0}" != "1" ]; then
  bash scripts/setup-venv.sh
fi
PY="$ROOT/.venv/bin/python"
MGIT_BIN="$ROOT/.venv/bin/mgit"
for exe in "$PY" "$MGIT_BIN"; do
  if [ ! -x "$exe" ]; then
    echo "demo: $exe is missing; run 'bash scripts/setup-venv.sh' first" >&2
    exit 1
  fi
done
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1

mgit() { "$MGIT_BIN" "$@"; }
python() { "$PY" "$@"; }

# show CMD ARGS...: print the command the way a user would type it, then run it.
show() {
  local out="" a
  for a in "$@"; do
    case "$a" in
      "" | *[!A-Za-z0-9_./=:,~+@%-]*) a="'${a//\'/\'\\\'\'}'" ;;
    esac
    out+="${out:+ }$a"
  done
  printf '\n$ %s\n' "$out"
  "$@"
}

section() { printf '\n==== %s ====\n' "$*"; }

WORK="${MGIT_DEMO_DIR:-/tmp/mgit-demo}"
WORK="${WORK%/}"
MARKER="$WORK/.mgit-demo-dir"
# Recreate the work folder, but never wipe a folder this script did not make.
if [ -e "$WORK" ]; then
  if [ -f "$MARKER" ] || [ -z "$(ls -A "$WORK" 2>/dev/null)" ]; then
    rm -rf "$WORK"
  else
    echo "demo: $WORK exists and was not made by this demo; set MGIT_DEMO_DIR elsewhere" >&2
    exit 1
  fi
fi
mkdir -p "$WORK"
touch "$MARKER"
MODELS="$WORK/models"
REPO="$WORK/repo"
OUT="$WORK/out"
T0=$SECONDS

section "1. finetune children of all-MiniLM-L6-v2 on CPU"
steps_arg=()
if [ -n "${MGIT_DEMO_STEPS:-}" ]; then steps_arg=(--steps "$MGIT_DEMO_STEPS"); fi
show python benchmarks/finetune.py --out "$MODELS" --only base,ft-full-v1,ft-full-v2,ft-head \
  "${steps_arg[@]}"

acc() {
  "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["models"][sys.argv[2]]["accuracy"])' \
    "$MODELS/manifest.json" "$1"
}
ACC_V1="$(acc ft-full-v1)"
ACC_V2="$(acc ft-full-v2)"
ACC_HEAD="$(acc ft-head)"

section "2. one repository, four model versions, three model lines"
show mgit init "$REPO" --model minilm
show mgit -C "$REPO" import "$MODELS/base" --model minilm -m "all-MiniLM-L6-v2 from PyPI"
show mgit -C "$REPO" import "$MODELS/ft-full-v1" --model minilm-sentiment --parent minilm \
  --relation finetune -m "full finetune" --meta task=sentiment --meta "accuracy=$ACC_V1"
show mgit -C "$REPO" import "$MODELS/ft-full-v2" --model minilm-sentiment -m "v2: more steps" \
  --meta task=sentiment --meta "accuracy=$ACC_V2"
show mgit -C "$REPO" import "$MODELS/ft-head" --model minilm-sentiment-head --parent minilm \
  --relation finetune -m "head only" --meta task=sentiment --meta "accuracy=$ACC_HEAD"

section "3. lineage, model lines, storage"
show mgit -C "$REPO" log --graph --all
show mgit -C "$REPO" models
show mgit -C "$REPO" stats

section "4. export every version and check it byte for byte"
show mgit -C "$REPO" export minilm-sentiment "$OUT/v2"
show mgit -C "$REPO" export minilm-sentiment~1 "$OUT/v1"
show mgit -C "$REPO" export minilm "$OUT/base"
show mgit -C "$REPO" export minilm-sentiment-head "$OUT/head"

# hashes DIR: "sha256  ./relative/path" for every file under DIR, in a fixed order.
hashes() {
  (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}

# verify LABEL EXPORTED ORIGINAL: same set of files, every file with the same sha256.
verify() {
  local label="$1" exported="$2" original="$3" want got n bytes
  want="$(hashes "$original")"
  got="$(hashes "$exported")"
  if [ -z "$want" ]; then
    echo "FAIL  $label: no files in $original" >&2
    exit 1
  fi
  if [ "$want" != "$got" ]; then
    echo "FAIL  $label: $exported differs from $original:" >&2
    diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") \
      | sed -n 's/^</  original:/p; s/^>/  exported:/p' >&2 || true
    exit 1
  fi
  n="$(printf '%s\n' "$want" | wc -l)"
  bytes="$(find "$original" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')"
  printf 'OK    %-28s %2d files, %10d bytes, every sha256 identical to %s\n' \
    "$label" "$n" "$bytes" "$original"
}

echo
verify "minilm-sentiment (v2)" "$OUT/v2" "$MODELS/ft-full-v2"
verify "minilm-sentiment~1 (v1)" "$OUT/v1" "$MODELS/ft-full-v1"
verify "minilm (base)" "$OUT/base" "$MODELS/base"
verify "minilm-sentiment-head" "$OUT/head" "$MODELS/ft-head"

section "5. storage"
RAW=0
for m in base ft-full-v1 ft-full-v2 ft-head; do
  RAW=$((RAW + $(du -sb "$MODELS/$m" | cut -f1)))
done
STORED="$(du -sb "$REPO/.mgit" | cut -f1)"
show du -sb "$REPO/.mgit"
awk -v raw="$RAW" -v stored="$STORED" 'BEGIN {
  printf "raw bytes of the 4 imported folders: %12d (%.1f MB)\n", raw, raw / 1e6
  printf "du -sb .mgit:                         %12d (%.1f MB)\n", stored, stored / 1e6
  printf "ratio:                                %12.2fx smaller\n", raw / stored
}'

section "6. what changed, and the lineage as a page"
show mgit -C "$REPO" diff minilm-sentiment~1 minilm-sentiment --max-tensors 3
show mgit -C "$REPO" diff minilm minilm-sentiment-head
show mgit -C "$REPO" find --derived-from minilm --task sentiment
show mgit -C "$REPO" lineage --html "$WORK/lineage.html"

section "7. lossy on request: error-bounded, gated by the model's own eval"
show mgit -C "$REPO" import "$MODELS/ft-full-v1" --model minilm-sentiment-lossy --parent minilm \
  --relation finetune -m "full finetune, lossy 1e-4" --lossy 1e-4 \
  --check "$PY benchmarks/finetune.py eval --min-acc $ACC_V1"
show mgit -C "$REPO" show minilm-sentiment-lossy --no-files
show mgit -C "$REPO" stats
show mgit -C "$REPO" fsck

section "8. tests over the lineage: stored, cached per version, marking the log"
show mgit -C "$REPO" test add sentiment --task sentiment --pass 'accuracy>=0.9' \
  --cmd "$PY benchmarks/finetune.py eval {model_dir} --json"
# the head-only finetune does not reach 0.9: test run exits 1 and says which version failed
show mgit -C "$REPO" test run --all -j 2 || echo "(exit $?: a version failed its test)"
# every result is cached now: nothing runs (the cached failure still makes it exit 1)
show mgit -C "$REPO" test run --all || true
show mgit -C "$REPO" log --oneline --all
show mgit -C "$REPO" find --failing sentiment
show mgit -C "$REPO" test blame sentiment minilm-sentiment-head || true

section "9. merge: a sentiment and a topic finetune into one model, recorded and redoable"
show python benchmarks/finetune.py train --task topic --parent "$MODELS/base" --out "$MODELS/ft-topic" \
  "${steps_arg[@]}"
show mgit -C "$REPO" import "$MODELS/ft-topic" --model minilm-topic --parent minilm --relation finetune \
  -m "topic finetune (sports / technology)" --meta task=topic
show mgit -C "$REPO" merge minilm-sentiment minilm-topic --base minilm --method ties --density 0.5 \
  --model minilm-soup -m "ties merge of sentiment and topic"
show mgit -C "$REPO" show --recipe minilm-soup
show mgit -C "$REPO" merge --redo minilm-soup

section "10. a new upstream version: rebase everything derived from the old one, gated by the tests"
# base v2: the body of all-MiniLM-L6-v2 trained further, contrastively, the way it was made
show python -c 'import sys; from pathlib import Path; sys.path.insert(0, "benchmarks")
from bench_rebase import build_v2; build_v2(Path(sys.argv[1]), Path(sys.argv[2]), steps=int(sys.argv[3]), lr=5e-5)' \
  "$MODELS/base" "$MODELS/base-v2" "${MGIT_DEMO_V2_STEPS:-50}"
show mgit -C "$REPO" import "$MODELS/base-v2" --model minilm -m "v2: continued contrastive training"
show mgit -C "$REPO" rebase --descendants-of minilm~1 --onto minilm --dry-run
# retrain-free (replay): each model's change from v1 re-applied on v2; the sentiment test gates
# each result, so the head-only finetune (below 0.9 before, too) is not moved: exit 1
show mgit -C "$REPO" rebase --descendants-of minilm~1 --onto minilm -j 2 \
  || echo "(exit $?: a model failed its gate and was not moved)"
show mgit -C "$REPO" rebase --status
show mgit -C "$REPO" test results minilm-sentiment
show mgit -C "$REPO" log --graph -n 12 --all
show mgit -C "$REPO" fsck

printf '\nSUCCESS: model versions imported, merged, rebased; lineage shown; every exported file byte-identical (%ds)\n' \
  "$((SECONDS - T0))"
