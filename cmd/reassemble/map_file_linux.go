//go:build linux

package main

import (
	"os"
	"syscall"
)

// releaseEvery is how much of a mapped capture is read between two
// releases of the pages behind the reader.
const releaseEvery = 4 << 20

// mappedFile is a capture file mapped read-only, so that its records are
// read where they sit in the page cache instead of being copied into a
// read buffer by a read system call per megabyte. The pages the reader is
// done with are released as it goes (their bytes stay in the file and the
// page cache), so that they do not count in the command's memory.
type mappedFile struct {
	data     []byte
	released int   // bytes at the start released
	every    int64 // bytes read between two releases: releaseEvery, less in tests
}

// mapFile maps fh, a regular file of size bytes; nil when it is empty,
// too large for the address space or cannot be mapped: the caller then
// reads it.
func mapFile(fh *os.File, size int64) *mappedFile {
	if size <= 0 || int64(int(size)) != size {
		return nil
	}
	data, err := syscall.Mmap(int(fh.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil
	}
	// Read ahead from a disk; advice only, its failure changes nothing.
	_ = syscall.Madvise(data, syscall.MADV_SEQUENTIAL)
	return &mappedFile{data: data, every: releaseEvery}
}

// release lets go of the pages wholly before off, whose bytes no frame in
// use holds; nothing on a nil mapping.
func (m *mappedFile) release(off int64) {
	if m == nil || off-int64(m.released) < m.every {
		return
	}
	end := int(off) &^ (os.Getpagesize() - 1)
	if end <= m.released {
		return
	}
	// Advice only: a page kept counts in memory, nothing else.
	_ = syscall.Madvise(m.data[m.released:end], syscall.MADV_DONTNEED)
	m.released = end
}

// close unmaps the file; nothing on a nil mapping.
func (m *mappedFile) close() {
	if m != nil {
		_ = syscall.Munmap(m.data)
	}
}
