#!/usr/bin/env bash
# The redirect benchmark (make bench-redirect), CI-sized: wrk for 2 s with
# 16 connections against one origin replica on Badger and on an etcd
# process; benchmarks/redirect/run.sh fails unless every answer was a 307
# to the user's cache. It proves the benchmark runs, not how fast.
set -euo pipefail
QUICK=1 exec "$(dirname "$0")/../../benchmarks/redirect/run.sh"
