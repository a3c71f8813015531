package cache_test

import (
	"bufio"
	"io"
)

func newReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }
