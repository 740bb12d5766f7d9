//go:build amd64 && !purego

package reassembly

// hasAVX2 is whether onesSum may use onesSumAVX2: set once as the package
// is initialised, from the processor, and only read after.
var hasAVX2 = cpuHasAVX2()

// onesSum is the ones' complement sum of b, not folded (see onesSumGo: its
// result folds to the same 16 bits as onesSumGo's), in vector registers: 32 bytes to an add where the processor
// has AVX2, 16 (SSE2, which every amd64 has) where not. A slice too short
// for a block is summed by onesSumRun.
func onesSum(b []byte) uint64 {
	if hasAVX2 {
		return onesSumByAVX2(b)
	}
	return onesSumBySSE2(b)
}

// onesSumByAVX2 is onesSum by onesSumAVX2, the last bytes short of a
// 32-byte block by onesSumRun (they start at an even offset).
func onesSumByAVX2(b []byte) uint64 {
	n := len(b) &^ 31
	return endAround(onesSumAVX2(b[:n]), 0) + onesSumRun(b[n:])
}

// onesSumBySSE2 is onesSum by onesSumSSE2, the last bytes short of a
// 16-byte block by onesSumRun.
func onesSumBySSE2(b []byte) uint64 {
	n := len(b) &^ 15
	return endAround(onesSumSSE2(b[:n]), 0) + onesSumRun(b[n:])
}

// onesSums is every onesSum this processor can run, by name, for the
// tests and benchmarks to compare with the reference: the assembly ones
// and the pure Go one.
func onesSums() []onesSumImpl {
	impls := []onesSumImpl{{"go", onesSumGo}, {"sse2", onesSumBySSE2}}
	if hasAVX2 {
		impls = append(impls, onesSumImpl{"avx2", onesSumByAVX2})
	}
	return impls
}

// onesSumAVX2 is the sum of b's 32-bit words, little-endian, in whole
// 32-byte blocks, in AVX2 registers (checksum_amd64.s), not folded (exact
// for any slice shorter than 2^34 bytes); bytes past the last whole block
// are left out. Folded by endAround, it is their onesSum.
//
//go:noescape
func onesSumAVX2(b []byte) uint64

// onesSumSSE2 is onesSumAVX2 with 16-byte blocks, in SSE2 registers.
//
//go:noescape
func onesSumSSE2(b []byte) uint64

// cpuHasAVX2 reports whether the processor has AVX2 and the operating
// system keeps its registers (CPUID and XGETBV).
func cpuHasAVX2() bool
