// Package l2test builds the Ethernet topologies vnic's tests need, in
// namespaces each test creates and removes (kerneltest.NewNetns): two
// "machines" joined by a veth underlay on 198.19.0.0/24, Linux bridges,
// veth pairs, plain Linux vxlan devices. Everything it creates lives inside
// those namespaces and goes with them, even when a test fails; nothing is
// created in the caller's namespace.
package l2test
