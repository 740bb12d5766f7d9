//go:build !unix

package main

import "os"

// writeFile opens path with flags, writes b and closes it.
func writeFile(path string, flags int, b []byte) error {
	fh, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return err
	}
	_, err = fh.Write(b)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}
