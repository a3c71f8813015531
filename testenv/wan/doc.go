// Package wan emulates a wide-area network link between an office and the
// origin data centre, for tests, the demo and benchmarks. Everything runs on
// loopback: a Link is a TCP proxy that listens on one address and forwards
// each accepted connection to a target address, shaping both directions.
//
// Each direction of each connection is a reader goroutine and a writer
// goroutine joined by a delay line:
//
//	src ──read──▶ token buckets ──▶ delay line ──(at due time)──write──▶ dst
//
// The reader cuts what it reads into small pieces (at most 16 KiB) and
// charges each piece to two token buckets: the link's bucket for that
// direction, shared by every connection (Config.Bandwidth), and the
// connection's own bucket (Config.PerConnBandwidth). A bucket hands out
// reservations in arrival order, so connections competing for the shared
// rate interleave piece by piece and get roughly equal shares. Bursts are
// capped at 10 ms worth of bytes (at most 64 KiB), which keeps measured
// rates within a percent or two of the setting.
//
// Once a piece may be sent it is stamped with a due time (now + Latency) and
// queued. The writer sends each piece when it falls due, independently of
// the reader, so latency adds delay without lowering throughput. The queue
// is bounded in bytes (twice rate × latency, within 256 KiB and 32 MiB; an
// unlimited link is sized as if it ran at 1 Gbit/s), so a fast sender is
// slowed by TCP flow control rather than buffered without limit.
//
// End of stream travels like data: when a reader sees EOF, the writer
// half-closes its destination (CloseWrite) after the pieces ahead of it have
// been delivered. An error on either socket, such as a peer that closed
// completely and then received data, tears down the pair.
//
// Config.CutAfter emulates an upstream stream that breaks at byte N: the
// target→client direction passes exactly N bytes, waits until the client
// has acknowledged them, and closes both sockets with linger 0 so the client
// sees a reset after the N bytes. Config.CutOnce limits this to the first
// connection, so a resumed request succeeds. Config.CutAtLinkBytes cuts
// whichever connection carries the link's Nth byte towards the client, and
// Config.CutUpAtLinkBytes the one carrying its Nth byte towards the target
// (an upload broken half way).
//
// The settings can be changed at run time with SetConfig; they apply to the
// bytes read after the change. Stats counts connections, bytes each way and
// cuts.
package wan
