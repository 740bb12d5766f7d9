module github.com/safepacket/reassembly

go 1.26.0

require github.com/google/gopacket v1.1.19
