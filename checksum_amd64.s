//go:build amd64 && !purego

#include "textflag.h"

// The sums below read b as little-endian 64-bit lanes, each the pair of
// 32-bit words lo and hi, and keep two 64-bit totals per lane: A, the sum
// of the lanes as they are (lo + hi<<32, wrapping), and H, the sum of the
// hi words. At the end A - H<<32 is the exact sum of the lo words (it is
// far below 2^64), and adding H gives the sum of b's 32-bit words, whose
// ones' complement fold is that of its 16-bit words (2^16 is 1 modulo
// 0xFFFF). That is three vector operations per load (add, shift, add) and
// no carries to chase; each block of the unrolled loop feeds accumulators
// of its own, so the adds do not wait on one another.

// func onesSumAVX2(b []byte) uint64
//
// The sum of b's 32-bit words in whole 32-byte blocks (a tail shorter than
// 32 bytes is left out), unfolded: exact below 2^34 bytes.
TEXT ·onesSumAVX2(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	VPXOR Y0, Y0, Y0 // A, four of them
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
	VPXOR Y4, Y4, Y4 // H, four of them
	VPXOR Y5, Y5, Y5
	VPXOR Y6, Y6, Y6
	VPXOR Y7, Y7, Y7
	CMPQ CX, $128
	JB   avx2block

avx2loop:
	VMOVDQU 0(SI), Y8
	VMOVDQU 32(SI), Y9
	VMOVDQU 64(SI), Y10
	VMOVDQU 96(SI), Y11
	VPADDQ  Y8, Y0, Y0
	VPADDQ  Y9, Y1, Y1
	VPADDQ  Y10, Y2, Y2
	VPADDQ  Y11, Y3, Y3
	VPSRLQ  $32, Y8, Y8
	VPSRLQ  $32, Y9, Y9
	VPSRLQ  $32, Y10, Y10
	VPSRLQ  $32, Y11, Y11
	VPADDQ  Y8, Y4, Y4
	VPADDQ  Y9, Y5, Y5
	VPADDQ  Y10, Y6, Y6
	VPADDQ  Y11, Y7, Y7
	ADDQ    $128, SI
	SUBQ    $128, CX
	CMPQ    CX, $128
	JAE     avx2loop

avx2block:
	CMPQ    CX, $32
	JB      avx2fold
	VMOVDQU (SI), Y8
	VPADDQ  Y8, Y0, Y0
	VPSRLQ  $32, Y8, Y8
	VPADDQ  Y8, Y4, Y4
	ADDQ    $32, SI
	SUBQ    $32, CX
	JMP     avx2block

avx2fold:
	VPADDQ       Y1, Y0, Y0
	VPADDQ       Y3, Y2, Y2
	VPADDQ       Y2, Y0, Y0
	VPADDQ       Y5, Y4, Y4
	VPADDQ       Y7, Y6, Y6
	VPADDQ       Y6, Y4, Y4
	VPSLLQ       $32, Y4, Y8
	VPSUBQ       Y8, Y0, Y0 // the lo words' sum, per lane
	VPADDQ       Y4, Y0, Y0 // and the hi words'
	VEXTRACTI128 $1, Y0, X1
	VZEROUPPER
	PADDQ        X1, X0
	PSHUFD       $0x4E, X0, X1
	PADDQ        X1, X0
	MOVQ         X0, ret+24(FP)
	RET

// func onesSumSSE2(b []byte) uint64
//
// onesSumAVX2 in 16-byte registers, for the amd64 processors without AVX2:
// the sum of b's 32-bit words in whole 16-byte blocks, unfolded.
TEXT ·onesSumSSE2(SB), NOSPLIT, $0-32
	MOVQ  b_base+0(FP), SI
	MOVQ  b_len+8(FP), CX
	PXOR  X0, X0
	PXOR  X1, X1
	PXOR  X2, X2
	PXOR  X3, X3
	PXOR  X4, X4
	PXOR  X5, X5
	PXOR  X6, X6
	PXOR  X7, X7
	CMPQ  CX, $64
	JB    sse2block

sse2loop:
	MOVOU 0(SI), X8
	MOVOU 16(SI), X9
	MOVOU 32(SI), X10
	MOVOU 48(SI), X11
	PADDQ X8, X0
	PADDQ X9, X1
	PADDQ X10, X2
	PADDQ X11, X3
	PSRLQ $32, X8
	PSRLQ $32, X9
	PSRLQ $32, X10
	PSRLQ $32, X11
	PADDQ X8, X4
	PADDQ X9, X5
	PADDQ X10, X6
	PADDQ X11, X7
	ADDQ  $64, SI
	SUBQ  $64, CX
	CMPQ  CX, $64
	JAE   sse2loop

sse2block:
	CMPQ  CX, $16
	JB    sse2fold
	MOVOU (SI), X8
	PADDQ X8, X0
	PSRLQ $32, X8
	PADDQ X8, X4
	ADDQ  $16, SI
	SUBQ  $16, CX
	JMP   sse2block

sse2fold:
	PADDQ  X1, X0
	PADDQ  X3, X2
	PADDQ  X2, X0
	PADDQ  X5, X4
	PADDQ  X7, X6
	PADDQ  X6, X4
	MOVO   X4, X8
	PSLLQ  $32, X8
	PSUBQ  X8, X0
	PADDQ  X4, X0
	PSHUFD $0x4E, X0, X1
	PADDQ  X1, X0
	MOVQ   X0, ret+24(FP)
	RET

// func cpuHasAVX2() bool
//
// Whether the processor has AVX2 (CPUID leaf 7, EBX bit 5) and the
// operating system saves the YMM registers across a context switch: CPUID
// leaf 1 reports AVX (ECX bit 28) and OSXSAVE (bit 27), and XGETBV's XCR0
// has the XMM and YMM state bits (1 and 2) set.
TEXT ·cpuHasAVX2(SB), NOSPLIT, $0-1
	MOVB  $0, ret+0(FP)
	XORL  AX, AX
	XORL  CX, CX
	CPUID
	CMPL  AX, $7
	JB    noavx2
	MOVL  $1, AX
	XORL  CX, CX
	CPUID
	ANDL  $(1<<27|1<<28), CX
	CMPL  CX, $(1<<27|1<<28)
	JNE   noavx2
	XORL  CX, CX
	XGETBV
	ANDL  $6, AX
	CMPL  AX, $6
	JNE   noavx2
	MOVL  $7, AX
	XORL  CX, CX
	CPUID
	SHRL  $5, BX
	ANDL  $1, BX
	MOVB  BX, ret+0(FP)

noavx2:
	RET
