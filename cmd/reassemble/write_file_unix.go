//go:build unix

package main

import (
	"io"
	"os"
	"syscall"
)

// writeFile opens path with flags, writes b and closes it, with the system
// calls themselves: an os.File would also ask the runtime's poller to take
// the descriptor (which it refuses for a regular file) and query its
// flags, five system calls more per write, most of them on a capture of
// 10k connections.
func writeFile(path string, flags int, b []byte) error {
	fd, err := retryEINTR(func() (int, error) { return syscall.Open(path, flags|syscall.O_CLOEXEC, 0o644) })
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	for len(b) > 0 && err == nil {
		var n int
		n, err = retryEINTR(func() (int, error) { return syscall.Write(fd, b) })
		switch {
		case err != nil:
		case n <= 0:
			err = io.ErrShortWrite
		default:
			b = b[n:]
		}
	}
	if err != nil {
		syscall.Close(fd)
		return &os.PathError{Op: "write", Path: path, Err: err}
	}
	if err := syscall.Close(fd); err != nil {
		return &os.PathError{Op: "close", Path: path, Err: err}
	}
	return nil
}

// retryEINTR calls fn again while it is interrupted by a signal.
func retryEINTR(fn func() (int, error)) (int, error) {
	for {
		n, err := fn()
		if err != syscall.EINTR {
			return n, err
		}
	}
}
