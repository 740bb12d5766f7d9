//go:build !linux

package main

import "os"

// mappedFile stands for a mapped capture file where mapping is not
// implemented: mapFile always returns nil and the file is read.
type mappedFile struct {
	data []byte
}

// mapFile returns nil: the caller reads the file.
func mapFile(*os.File, int64) *mappedFile { return nil }

// release does nothing.
func (m *mappedFile) release(int64) {}

// close does nothing.
func (m *mappedFile) close() {}
