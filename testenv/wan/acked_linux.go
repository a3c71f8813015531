package wan

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"
	"unsafe"
)

// waitAcked waits until the peer of c has acknowledged every byte written
// to c, so that closing c with linger 0 loses none of them. It polls the
// socket's count of unacknowledged bytes (SIOCOUTQ, the same request number
// as TIOCOUTQ) until it reaches zero or ctx is done.
func waitAcked(ctx context.Context, c *net.TCPConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("wan: raw conn: %w", err)
	}
	for {
		var pending int32
		var errno syscall.Errno
		err := raw.Control(func(fd uintptr) {
			_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&pending)))
		})
		if err != nil {
			return fmt.Errorf("wan: raw control: %w", err)
		}
		if errno != 0 {
			return fmt.Errorf("wan: ioctl SIOCOUTQ: %w", errno)
		}
		if pending == 0 {
			return nil
		}
		if err := sleepUntil(ctx, time.Now().Add(time.Millisecond)); err != nil {
			return fmt.Errorf("wan: %d bytes still unacknowledged: %w", pending, err)
		}
	}
}
