package nic

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/tun"

	"vnic/vnic/ethtool"
	"vnic/vnic/nsutil"
	"vnic/vnic/tundev"
)

// Open creates the NIC's device in opt.Netns (which must exist), with the
// offloads its engine uses, configures the interface (MTU, txqueuelen,
// addresses, up) and starts following `ethtool -K NAME gro on|off`.
// Nothing moves until Connect and Start.
//
// Equivalent to: ip tuntap add NAME mode tun|tap vnet_hdr; [ip link set
// NAME address MAC;] ip link set NAME mtu M txqueuelen Q; ip addr add A dev
// NAME; ip link set NAME up — plus the NIC behind it.
func Open(ctx context.Context, opt Options) (_ *NIC, err error) {
	if err := opt.Normalize(); err != nil {
		return nil, err
	}
	log := opt.Logger.With("dev", opt.Name)
	if opt.Netns != "" {
		log = log.With("netns", opt.Netns)
	}
	opt.Logger = log
	var dev Device
	offloads := ""
	if err := nsutil.Do(opt.Netns, func() error {
		switch opt.Engine {
		case EngineWireGuard:
			d, err := tun.CreateTUN(opt.Name, opt.MTU)
			if err != nil {
				return fmt.Errorf("wireguard-go CreateTUN(%q): %w", opt.Name, err)
			}
			dev, offloads = d, "negotiated by wireguard-go"
		default:
			offl := tundev.All
			if opt.Mode != ModeTAP {
				// VXLAN over the NIC hands it tunnel super-packets (Linux
				// 6.17+; given up, logged, where the kernel refuses them).
				offl |= tundev.UDPTunnel | tundev.UDPTunnelCsum
			}
			d, err := tundev.Open(tundev.Config{Name: opt.Name, Offloads: offl, TAP: opt.Mode == ModeTAP, Logger: log})
			if err != nil {
				return err
			}
			dev, offloads = d, d.Offloads().String()
		}
		return nil
	}); err != nil {
		return nil, err
	}
	n, err := New(dev, opt)
	if err != nil {
		_ = dev.Close()
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()
	h, err := nsutil.Handle(opt.Netns)
	if err != nil {
		return nil, err
	}
	if opt.Mode == ModeTAP {
		if err := setMAC(h, opt.Name, opt.MAC); err != nil {
			h.Close()
			return nil, err
		}
	}
	if err := nsutil.ConfigureLink(h, opt.Name, nsutil.LinkConfig{MTU: opt.MTU, Addrs: opt.Addrs, Up: true, TxQueueLen: opt.TxQueueLen}); err != nil {
		h.Close()
		return nil, err
	}
	// Up means usable: an IPv6 address is delivered locally some
	// milliseconds after the link came up (nsutil.WaitLocal).
	if err := nsutil.WaitLocal(h, opt.Addrs, 5*time.Second); err != nil {
		h.Close()
		return nil, err
	}
	var hmu sync.Mutex
	n.kernel = func() (*Kernel, error) {
		hmu.Lock()
		defer hmu.Unlock()
		if h == nil {
			return nil, errors.New("closed")
		}
		return linkStats(h, opt.Name)
	}
	n.onClose(func() {
		hmu.Lock()
		h.Close()
		h = nil
		hmu.Unlock()
	})
	if err := n.followGRO(ctx); err != nil {
		log.Warn("cannot follow ethtool -K gro; GRO stays on", "err", err)
	}
	if opt.Mode == ModeTAP {
		log.Info("NIC device created", "mode", opt.Mode, "mac", opt.MAC.String(), "engine", opt.Engine, "offloads", offloads, "mtu", opt.MTU, "hw_mtu", opt.HWMTU, "model", opt.Model)
	} else {
		log.Info("NIC device created", "engine", opt.Engine, "offloads", offloads, "mtu", opt.MTU, "hw_mtu", opt.HWMTU, "model", opt.Model)
	}
	if opt.Engine == EngineWireGuard {
		log.Info("the wireguard engine splits and coalesces inside wireguard-go: host-tx and host-rx are neither counted nor recorded (the wire is)")
	}
	return n, nil
}

// followGRO follows the interface's generic-receive-offload feature, so
// that `ethtool -K NAME gro off` stops the NIC from coalescing what it
// hands the kernel. It returns once the current state is applied.
func (n *NIC) followGRO(ctx context.Context) error {
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	first := make(chan error, 1)
	var once sync.Once
	done := make(chan struct{})
	log := n.opt.Logger
	go func() {
		defer close(done)
		err := ethtool.Watch(wctx, n.opt.Netns, n.opt.Name, func(f map[string]bool) {
			if on, ok := f["rx-gro"]; ok { // ethtool -K DEV gro on|off
				n.SetGRO(on)
				log.Debug("following ethtool", "gro", on)
			}
			once.Do(func() { first <- nil })
		})
		once.Do(func() { first <- err })
		if err != nil && wctx.Err() == nil {
			log.Warn("stopped following ethtool -K gro", "err", err)
		}
	}()
	n.onClose(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			log.Warn("ethtool watch did not stop within 2 s")
		}
	})
	return <-first
}

// linkStats reads the interface's counters as the kernel keeps them.
func linkStats(h *netlink.Handle, name string) (*Kernel, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, err
	}
	s := l.Attrs().Statistics
	if s == nil {
		return nil, errors.New("no statistics")
	}
	return &Kernel{TXPackets: s.TxPackets, TXBytes: s.TxBytes, TXDropped: s.TxDropped, TXErrors: s.TxErrors,
		RXPackets: s.RxPackets, RXBytes: s.RxBytes, RXDropped: s.RxDropped, RXErrors: s.RxErrors}, nil
}

// setMAC gives a TAP its hardware address, before it comes up.
//
// Equivalent to: ip link set NAME address MAC
func setMAC(h *netlink.Handle, name string, mac net.HardwareAddr) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	if err := h.LinkSetHardwareAddr(l, mac); err != nil {
		return fmt.Errorf("ip link set %s address %v: %w", name, mac, err)
	}
	return nil
}
