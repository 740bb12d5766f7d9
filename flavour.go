package reassembly

// The fork flavour of this package, gopacket/reassembly, is generated from
// it; so are those of the internal packages it uses.
//go:generate go run ./internal/cmd/flavour

// forkFlavour tells which gopacket a build of this package serves: false in
// the hand-written source, for github.com/google/gopacket; true in the copy
// that internal/cmd/flavour generates under gopacket/reassembly for
// github.com/gopacket/gopacket. The few places where the fork's semantics
// differ from v1.1.19's read it, instead of a second copy of any logic.
const forkFlavour = false
