//go:build !unix

package main

import "os"

// flowFile is an open flow file.
type flowFile struct{ fh *os.File }

// openFlowFile opens path with flags.
func openFlowFile(path string, flags int) (flowFile, error) {
	fh, err := os.OpenFile(path, flags, 0o644)
	return flowFile{fh}, err
}

// write writes the whole of b.
func (f flowFile) write(_ string, b []byte) error {
	_, err := f.fh.Write(b)
	return err
}

// close closes the file.
func (f flowFile) close(string) error { return f.fh.Close() }

// maxOpenFlowFiles is 0: every write opens its file and closes it.
func maxOpenFlowFiles() int { return 0 }
