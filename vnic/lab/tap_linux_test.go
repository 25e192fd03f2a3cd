package lab

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"vnic/vnic/capture"
	"vnic/vnic/kerneltest"
	"vnic/vnic/packet"
)

// asTAP returns s with every NIC in mode tap, under another name.
func asTAP(s Scenario) Scenario {
	s.Name += "-tap"
	hosts := make([]Host, len(s.Hosts))
	for i, h := range s.Hosts {
		h.NIC.Mode = "tap"
		nics := make([]NIC, len(h.NICs))
		for j, n := range h.NICs {
			n.Mode = "tap"
			nics[j] = n
		}
		h.NICs = nics
		hosts[i] = h
	}
	s.Hosts = hosts
	return s
}

// TestTAPLabs: the tso-capture and forcedeth stories pass with TAP NICs
// (`mode: tap`), their pcap holding Ethernet frames: the forcedeth NIC's
// 9000-byte jumbo frames and the 1500-byte frames its hidden TSO cuts,
// each 14 bytes longer behind its MAC header.
func TestTAPLabs(t *testing.T) {
	if testing.Short() {
		t.Skip("root lab run")
	}
	kerneltest.RequireRoot(t)
	for _, name := range []string{"tso-capture", "forcedeth"} {
		t.Run(name, func(t *testing.T) {
			s, ok := Lookup(name)
			if !ok {
				t.Fatalf("no %s", name)
			}
			s = asTAP(s)
			out := t.TempDir()
			var stdout bytes.Buffer
			res, err := Run(t.Context(), s, Options{Out: out, Stdout: &stdout})
			if err != nil {
				t.Fatalf("%v\n%s", err, stdout.String())
			}
			if !res.Passed || res.Expectations == 0 {
				t.Errorf("%s: %d of %d expectations failed\n%s", s.Name, res.Failed, res.Expectations, stdout.String())
			}
			recs, err := capture.ReadFile(filepath.Join(out, s.Name+".pcapng"))
			if err != nil {
				t.Fatal(err)
			}
			ether, arp, maxWire := 0, 0, 0
			for _, r := range recs {
				if _, ok := packet.EthernetIP(r.Data); ok {
					ether++
				} else if _, typ := packet.EthernetHeader(r.Data); typ == packet.EtherTypeARP {
					arp++
				}
				if r.Point == capture.Wire {
					maxWire = max(maxWire, r.Len)
				}
			}
			if ether+arp != len(recs) || ether == 0 || arp == 0 {
				t.Errorf("%d IP and %d ARP frames of %d records: want every record an Ethernet frame, ARP among them", ether, arp, len(recs))
			}
			t.Logf("%s: %d Ethernet records (%d ARP), largest wire frame %d bytes", s.Name, len(recs), arp, maxWire)
			if got := leftovers(res); len(got) != 0 || len(res.Namespaces) == 0 {
				t.Errorf("namespaces left: %v (of %v)", got, res.Namespaces)
			}
		})
	}
}

func TestModeValidation(t *testing.T) {
	s, _ := Lookup("tso-capture")
	s = asTAP(s)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	s.Hosts[0].NIC.Mode = "tun"
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "every NIC of a lab has the same mode") {
		t.Errorf("mixed modes: %v", err)
	}
	s.Hosts[0].NIC.Mode = "eth"
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "use tun or tap") {
		t.Errorf("mode eth: %v", err)
	}
}
