//go:build unix

package main

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lingeringPipe makes a named pipe that serves the file at path and stays
// open linger after its last byte, and returns its name and a function
// that waits for the writer and removes the pipe.
func lingeringPipe(path string, linger time.Duration) (string, func(), error) {
	dir, err := os.MkdirTemp("", "clients-pipe-")
	if err != nil {
		return "", nil, err
	}
	pipe := filepath.Join(dir, filepath.Base(path))
	if err := syscall.Mkfifo(pipe, 0o600); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		// Opening blocks until the program opens the pipe to read.
		w, err := os.OpenFile(pipe, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer w.Close()
		if f, err := os.Open(path); err == nil {
			_, _ = io.Copy(w, f)
			f.Close()
		}
		time.Sleep(linger)
	}()
	done := func() {
		// A program that never opened the pipe, or stopped reading it,
		// would leave the writer blocked: read what is left ourselves
		// until the writer closes.
		if r, err := os.OpenFile(pipe, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			go drainUntil(r, wrote)
			<-wrote
			r.Close()
		} else {
			<-wrote
		}
		os.RemoveAll(dir)
	}
	return pipe, done, nil
}

// drainUntil reads and drops what r, the read end of a pipe opened
// without blocking, yields until wrote is closed. A pipe whose writer has
// not opened it yet reads as at its end, so an end of file before wrote is
// closed means the writer is still coming: reading stopped there, the
// writer would block on a full pipe, and the cleanup waiting for it hang.
func drainUntil(r *os.File, wrote <-chan struct{}) {
	buf := make([]byte, 64<<10)
	for {
		_, err := r.Read(buf)
		switch {
		case err == io.EOF:
			select {
			case <-wrote:
				return
			case <-time.After(time.Millisecond):
			}
		case err != nil:
			return // closed by the cleanup
		}
	}
}
