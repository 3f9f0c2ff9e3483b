# Shared by the training benchmarks: train CONFIG OUTPUT, skipped when its results exist, continued with
# --resume when a run stopped part-way.
train() {  # config output
  [ -s "$2/train-results.json" ] && return
  flag=""; [ -d "$2" ] && flag="--resume"
  echo "== train $2 $flag $(date -u +%T)"
  rankwise train "$1" --output "$2" $flag && return
  echo "== training stopped (rc $?): continuing from its last checkpoint"
  rankwise train "$1" --output "$2" --resume
}
