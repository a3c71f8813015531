// Command benchmarks pulls real images through every setup a user might
// deploy — a direct pull over the WAN, dtrcache as a mirror and as the
// origin's redirect target, distribution's pull-through cache and nginx
// proxy_cache — side by side on the same backend registry and the same
// emulated WAN, and writes a report (Markdown, JSON and PNG charts).
//
//	go run ./benchmarks                 # the full run (tens of minutes)
//	go run ./benchmarks --quick         # a CI-sized smoke run
//
// See the README for the scenarios and the latest table.
package main
