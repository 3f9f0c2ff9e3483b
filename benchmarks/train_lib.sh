# Shared by the training benchmarks: train CONFIG OUTPUT [rankwise train options], skipped when its results
# exist, continued with --resume when a run stopped part-way.
train() {  # config output [options]
  local config=$1 output=$2; shift 2
  [ -s "$output/train-results.json" ] && return
  flag=""; [ -d "$output" ] && flag="--resume"
  echo "== train $output $flag $(date -u +%T)"
  rankwise train "$config" --output "$output" $flag "$@" && return
  echo "== training stopped (rc $?): continuing from its last checkpoint"
  rankwise train "$config" --output "$output" --resume "$@"
}
