package daemon

import (
	"vnic/vnic/capture"
	"vnic/vnic/peer"
	"vnic/vnic/tundev"
)

// vnicNIC is vnic's own engine on a tundev device.
type vnicNIC struct {
	*engine
	dev *tundev.Device
}

func (n *vnicNIC) close() error            { return n.dev.Close() }
func (n *vnicNIC) grantedOffloads() string { return n.dev.Offloads().String() }
func (n *vnicNIC) stats(s *Stats) {
	s.GRO = n.groOn.Load()
	s.Coalesce = n.coalesceStats()
}

// openNIC creates the TUN device in the calling thread's namespace.
func (d *Daemon) openNIC() (nic, error) {
	switch d.cfg.Engine {
	case EngineWireGuard:
		return openWireGuard(d.cfg.Name, d.cfg.MTU, d.st)
	}
	dev, err := tundev.Open(tundev.Config{Name: d.cfg.Name, Offloads: tundev.All, Logger: d.log})
	if err != nil {
		return nil, err
	}
	return &vnicNIC{engine: newEngine(dev, nil, nil, d.st, d.cfg.Batch, d.cfg.MTU, d.cfg.HWMTU), dev: dev}, nil
}

func (d *Daemon) setCapture(c *capture.NIC) {
	switch n := d.nic.(type) {
	case *vnicNIC:
		n.cap = c
	case *wgNIC:
		n.cap = c
	}
}

func (d *Daemon) setPeer(p *peer.Peer) {
	switch n := d.nic.(type) {
	case *vnicNIC:
		n.far = p
	case *wgNIC:
		n.far = p
	}
}
