// Command benchmarks pulls real images through every setup a user might
// deploy — a direct pull over the WAN, dtrcache as a mirror and as the
// origin's redirect target, distribution's pull-through cache and nginx
// proxy_cache — side by side on the same backend registry and the same
// emulated WAN, and writes a report (Markdown, JSON and PNG charts). The
// mirroring scenario (mirror.go) copies ten images that share a base layer
// from a US to an EU registry across the WAN with dtrcache's push
// mirroring, skopeo sync, regsync and crane copy, and writes mirror.md and
// mirror.json beside the report.
//
//	go run ./benchmarks                 # the full run (tens of minutes)
//	go run ./benchmarks --quick         # a CI-sized smoke run
//	go run ./benchmarks --scenarios mirror   # only the mirroring benchmark
//
// See the README for the scenarios and the latest table.
package main
