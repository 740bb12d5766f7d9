package reassembly_test

// The evasion captures of suricata-verify through the Safe face, by
// default and with the IDS options (insertion_test.go has the crafted
// packets), against Wireshark's reference (conformance_test.go).

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	ours "github.com/safepacket/reassembly"
	"github.com/safepacket/reassembly/internal/capturetest"
)

// idsCaptureRun reassembles a capture with the Safe face and opts, its
// directions named as the reference names them (confReassemble).
func idsCaptureRun(t *testing.T, path string, opts ours.SafeAssemblerOptions) (*confRun, ours.AssemblerStats) {
	t.Helper()
	opts.DisableBackgroundFlush = true
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	f := &confFactory[ours.TCPFlowDirection, ours.Sequence, ours.ScatterGather, ours.AssemblerContext, ours.Stream]{ownStart: true}
	a, err := ours.NewSafeAssembler(ours.NewSafeStreamPool(f, 0), opts)
	require.NoError(t, err)
	run := confReassemble(t, path, func() []*confConn { return f.conns },
		func(nf gopacket.Flow, tcp *layers.TCP, ac *confContext) { _ = a.AssembleWithContext(nf, tcp, ac) },
		func() { a.FlushAll() })
	st := a.Stats()
	require.NoError(t, a.Close())
	return run, st
}

// Property: on the evasion captures of suricata-verify, the IDS options
// (ChecksumDrop, CheckWindow and its RST rules) deliver, direction by
// direction, what the host accepted: Wireshark's reference where the host
// took every byte the capture shows, less what the capture's attack sent
// past the host, each exception argued from the capture; the default Safe
// face delivers the attacker's version where the two differ. The
// reference is read from testdata/expected, never from our output.
func TestEvasionCaptures(t *testing.T) {
	t.Parallel()
	// host says what the host accepted of each direction: "ref" all of
	// the reference, "" nothing; a direction not named is expected
	// nowhere. dflt is what the default Safe face delivers where it
	// differs from host.
	type dir struct{ host, dflt string }
	for _, tc := range []struct {
		name string
		why  string
		// offload: the capture was taken on a host with checksum
		// offload, whose every segment carries a wrong checksum: the IDS
		// options then count checksums instead of dropping (ChecksumDrop
		// would drop all of that host's traffic: checked apart).
		offload string
		dirs    map[string]dir
	}{
		{name: "sv-bug-3286-01-no-evasion.pcap", why: "a clean HTTP exchange: the baseline",
			dirs: map[string]dir{
				"192.168.1.43.35488-192.168.1.90.80.bin": {host: "ref"},
				"192.168.1.90.80-192.168.1.43.35488.bin": {host: "ref"},
			}},
		{name: "sv-bug-3286-03-windows-evasion.pcap",
			why: "an RST and a FIN answer the client's SYN before the SYN-ACK; the Windows client ignores them, completes the handshake and sends " +
				"its request, which the server acknowledges (packet 7), and acknowledges the response (packet 9): both hosts took every byte",
			dirs: map[string]dir{
				"192.168.1.27.58432-192.168.1.90.80.bin": {host: "ref"},
				"192.168.1.90.80-192.168.1.27.58432.bin": {host: "ref"},
			}},
		{name: "sv-stream-out-of-window.pcap",
			why: "the one data segment starts 100,000 bytes past the 256-byte window of the SYN-ACK (no window scale): the server drops it",
			dirs: map[string]dir{
				"192.0.2.10.43210-198.51.100.5.80.bin": {host: "", dflt: "ref"},
			}},
		{name: "sv-rst-unacked-03-gap.pcap",
			why: "the server's bytes, a hole the capture missed among them, all precede the client's RST, which is at the client's next byte; " +
				"the reference's client bytes are the RST's own data, which a host never takes",
			dirs: map[string]dir{
				"2.2.2.2.8080-1.1.1.1.12345.bin": {host: "ref"},
				"1.1.1.1.12345-2.2.2.2.8080.bin": {host: ""},
			}},
		{name: "sv-rst-unacked-10.pcap",
			why: "a download with lost and reordered segments, all inside the client's window (256 scaled by 2^8), ended by the client's RST at its next byte",
			dirs: map[string]dir{
				"10.3.11.101.49309-174.56.47.59.80.bin": {host: "ref"},
				"174.56.47.59.80-10.3.11.101.49309.bin": {host: "ref"},
			}},
		{name: "sv-eve-overlap-exact.pcap",
			why: "GOOD, then EVIL over the same 4 bytes: the first copy was in order, handed to the server's application at once, so " +
				"every stack keeps it (the reference's first copy), and the server acknowledges 4 bytes",
			dirs: map[string]dir{
				"1.1.1.1.12345-2.2.2.2.8080.bin": {host: "ref"},
			}},
		{name: "sv-smb-eicar-overlap.pcap", offload: "192.168.1.100",
			why: "SMB carrying EICAR; the server's last segment is sent twice, the same bytes; every segment of the client, where the " +
				"capture was taken, has the wrong checksum of NIC offload, and the server acknowledges each of them",
			dirs: map[string]dir{
				"192.168.1.100.48234-192.168.1.3.445.bin": {host: "ref"},
				"192.168.1.3.445-192.168.1.100.48234.bin": {host: "ref"},
			}},
		{name: "sv-urgent11.pcap",
			why: "the client resets its handshake with an RST at its next byte, then sends the exploit's 1024 bytes without a new SYN: " +
				"the server has no connection left to take them (it answers them with an RST)",
			dirs: map[string]dir{
				"192.168.1.24.31337-178.128.142.56.443.bin": {host: "", dflt: "ref"},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := capturetest.Testdata("captures", tc.name)
			ref := func(file string) string {
				b, err := os.ReadFile(capturetest.Testdata("expected", tc.name, file))
				require.NoError(t, err)
				return string(b)
			}
			want := func(which, file string) string {
				if which == "ref" {
					return ref(file)
				}
				return which
			}
			got := func(run *confRun, file string) string {
				if d := run.files[file]; d != nil {
					return string(d.data)
				}
				return ""
			}
			ids := ours.SafeAssemblerOptions{ChecksumPolicy: ours.ChecksumDrop, CheckWindow: true}
			if tc.offload != "" {
				ids.ChecksumPolicy = ours.ChecksumCount
			}
			hostRun, st := idsCaptureRun(t, path, ids)
			plainRun, _ := idsCaptureRun(t, path, ours.SafeAssemblerOptions{})
			for file, d := range tc.dirs {
				require.Equal(t, want(d.host, file), got(hostRun, file), "IDS options, %s: %s", file, tc.why)
				dflt := d.dflt
				if dflt == "" && d.host != "" {
					dflt = d.host
				}
				if d.dflt != "" || d.host != "" {
					require.Equal(t, want(dflt, file), got(plainRun, file), "default Safe face, %s", file)
				}
			}
			for file, d := range hostRun.files {
				if _, named := tc.dirs[file]; !named {
					require.Empty(t, d.data, "IDS options: a direction the capture does not have: %s", file)
				}
			}
			if tc.offload == "" {
				require.Zero(t, st.BadChecksums)
				return
			}
			// ChecksumDrop on such a capture drops all that host sent.
			ids.ChecksumPolicy = ours.ChecksumDrop
			_, st = idsCaptureRun(t, path, ids)
			var sent int64
			for file, d := range tc.dirs {
				if strings.HasPrefix(file, tc.offload+".") && d.host == "ref" {
					sent += int64(len(ref(file)))
				}
			}
			require.Equal(t, sent, st.BytesBadChecksum, "ChecksumDrop drops every byte of the offloading host")
		})
	}
}
