package lab

import (
	"strings"
	"testing"
)

func TestBuiltinValid(t *testing.T) {
	if len(Builtin()) == 0 {
		t.Fatal("no built-in scenarios")
	}
	for _, s := range Builtin() {
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
		if got, ok := Lookup(s.Name); !ok || got.Name != s.Name {
			t.Errorf("Lookup(%q) = %v", s.Name, ok)
		}
	}
	if _, ok := Lookup("nope"); ok {
		t.Error("Lookup(nope) found something")
	}
}

func TestValidateRejects(t *testing.T) {
	base, _ := Lookup("tso-capture")
	for name, mutate := range map[string]func(*Scenario){
		"no name":        func(s *Scenario) { s.Name = "" },
		"bad address":    func(s *Scenario) { s.Hosts[0].NIC.Addrs = []string{"198.18.0.1"} },
		"unknown host":   func(s *Scenario) { s.Links[0].B = "cumin" },
		"two links":      func(s *Scenario) { s.Links = append(s.Links, Link{Kind: LinkPeer, A: "ginger", B: "p"}) },
		"link kind":      func(s *Scenario) { s.Links[0].Kind = "router" },
		"traffic kind":   func(s *Scenario) { s.Steps[0].Traffic.Kind = "iperf" },
		"expectation":    func(s *Scenario) { s.Steps[0].Expect = []Expectation{{Kind: "magic"}} },
		"setup host":     func(s *Scenario) { s.Steps[1].Setup[0].Host = "cumin" },
		"service":        func(s *Scenario) { s.Hosts[1].Services = []string{"echo"} },
		"duplicate host": func(s *Scenario) { s.Hosts[1].Name = "ginger" },
		"hw_mtu above mtu": func(s *Scenario) {
			s.Hosts[0].NIC.HWMTU = 9000
		},
		"one address, two hosts": func(s *Scenario) { s.Hosts[1].NIC.Addrs = []string{"198.18.0.1/15"} },
		"host name with a dot":   func(s *Scenario) { s.Hosts[1].Name = "basil.lab" },
		"interface name too long": func(s *Scenario) {
			s.Hosts[1].NIC.Name = "eth0-to-the-router"
		},
		"event as a drop": func(s *Scenario) {
			s.Steps[0].Expect = []Expectation{{Kind: ExpectDrop, Reason: "eth1: frag-needed sent"}}
		},
	} {
		s := base
		s.Hosts = append([]Host(nil), base.Hosts...)
		for i := range s.Hosts {
			s.Hosts[i].NIC.Addrs = append([]string(nil), s.Hosts[i].NIC.Addrs...)
		}
		s.Links = append([]Link(nil), base.Links...)
		s.Steps = append([]Step(nil), base.Steps...)
		for i := range s.Steps {
			s.Steps[i].Setup = append([]Cmd(nil), s.Steps[i].Setup...)
		}
		mutate(&s)
		if err := s.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "lab") {
			t.Errorf("%s: error %q does not say where", name, err)
		}
	}
}

func TestValidateRejectsRouters(t *testing.T) {
	for name, mutate := range map[string]func(*Scenario){
		"router host":     func(s *Scenario) { s.Routers[0].Ifaces[0].Host = "cumin" },
		"router gro":      func(s *Scenario) { s.Routers[0].Ifaces[0].GRO = "maybe" },
		"router address":  func(s *Scenario) { s.Routers[0].Ifaces[0].Addrs = []string{"x"} },
		"router twice":    func(s *Scenario) { s.Routers[0].Ifaces[1].Host = s.Routers[0].Ifaces[0].Host },
		"router name":     func(s *Scenario) { s.Routers[0].Name = "web" },
		"change router":   func(s *Scenario) { s.Steps[1].Router = []RouterChange{{Router: "nope", Iface: "eth1", GRO: GROOff}} },
		"change iface":    func(s *Scenario) { s.Steps[1].Router = []RouterChange{{Router: "router", Iface: "eth9", GRO: GROOff}} },
		"firewall iface":  func(s *Scenario) { s.Routers[0].Firewall = []FirewallRule{{Iface: "eth9", DropAbove: 1500}} },
		"firewall action": func(s *Scenario) { s.Routers[0].Firewall = []FirewallRule{{Iface: "eth0"}} },
		"model":           func(s *Scenario) { s.Steps[1].Models = []ModelChange{{Host: "web", Model: "e1000"}} },
		"host route":      func(s *Scenario) { s.Hosts[0].Routes = []string{"nope"} },
	} {
		s := groRouter()
		mutate(&s)
		if err := s.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "lab") {
			t.Errorf("%s: error %q does not say where", name, err)
		}
	}
}
