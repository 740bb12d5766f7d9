//go:build !amd64 || purego

package reassembly

// onesSum is the ones' complement sum of b: onesSumGo, where no assembly
// sum is built.
func onesSum(b []byte) uint64 { return onesSumGo(b) }

// onesSums is every onesSum built here, by name: the pure Go one.
func onesSums() []onesSumImpl { return []onesSumImpl{{"go", onesSumGo}} }
