//go:build unix

package main

import (
	"io"
	"os"
	"syscall"
)

// flowFile is an open flow file, held by its descriptor alone: an os.File
// would also ask the runtime's poller to take the descriptor (which it
// refuses for a regular file) and query its flags, five system calls more
// per file, most of them on a capture of 10k connections.
type flowFile int

// openFlowFile opens path with flags.
func openFlowFile(path string, flags int) (flowFile, error) {
	fd, err := retryEINTR(func() (int, error) { return syscall.Open(path, flags|syscall.O_CLOEXEC, 0o644) })
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return flowFile(fd), nil
}

// write writes the whole of b; path names the file in an error.
func (f flowFile) write(path string, b []byte) error {
	for len(b) > 0 {
		n, err := retryEINTR(func() (int, error) { return syscall.Write(int(f), b) })
		switch {
		case err != nil:
			return &os.PathError{Op: "write", Path: path, Err: err}
		case n <= 0:
			return &os.PathError{Op: "write", Path: path, Err: io.ErrShortWrite}
		}
		b = b[n:]
	}
	return nil
}

// close closes the file; path names it in an error.
func (f flowFile) close(path string) error {
	if err := syscall.Close(int(f)); err != nil {
		return &os.PathError{Op: "close", Path: path, Err: err}
	}
	return nil
}

// maxOpenFlowFiles is how many flow files may stay open between writes
// (maxOpenFor the process's limit on descriptors, which the Go runtime
// raises to the hard limit at start).
func maxOpenFlowFiles() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return maxOpenFor(uint64(lim.Cur))
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
