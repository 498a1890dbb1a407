# shellcheck shell=bash disable=SC2154  # one, indep, two: the sourcing script's arrays
# Sourced by bench/rank_scaling.sh and bench/multinode_scaling.sh: the medians over the rounds of
# the arrays one, indep and two (samples/s of 1 rank, two independent 1-rank runs, the 2-rank
# configuration), and the ratios scaling, ceiling and efficiency.
#   scaling_summary LABEL     LABEL names the 2-rank configuration ("2 ranks", "2 nodes x 1 rank")
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
scaling_summary() {
  local label=$1 short=${1%% x *} m1 mi m2
  m1=$(median "${one[@]}") mi=$(median "${indep[@]}") m2=$(median "${two[@]}")
  printf 'median samples/s: 1 rank %s | 2 independent %s | %s %s\n' "$m1" "$mi" "$label" "$m2"
  awk -v a="$m1" -v i="$mi" -v t="$m2" -v s="$short" 'BEGIN {
    printf "scaling (%s / 1 rank) %.3f | ceiling (2 independent / 1 rank) %.3f | efficiency (%s / 2 independent) %.3f\n", s, t / a, i / a, s, t / i }'
}
