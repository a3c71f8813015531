//go:build !linux

package wan

import (
	"context"
	"net"
	"time"
)

// waitAcked gives the peer of c a moment to receive the bytes written to c
// before the connection is reset. Outside Linux there is no portable way to
// ask the socket, so a cut may lose the last bytes before CutAfter.
func waitAcked(ctx context.Context, _ *net.TCPConn) error {
	return sleepUntil(ctx, time.Now().Add(20*time.Millisecond))
}
