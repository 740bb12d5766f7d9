module github.com/safepacket/reassembly

go 1.26.0

require github.com/google/gopacket v1.1.19

require (
	github.com/stretchr/testify v1.12.1 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
)
