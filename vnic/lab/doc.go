// Package lab runs vnic labs: a small network of network namespaces joined
// by vnic NICs (direct wires, or a gVisor peer host), steps that flip real
// offload switches (ethtool -K) and send traffic, and the three views that
// confused everyone in the stories of docs/stories.md — what the sender's tcpdump captured
// (host-tx), what crossed the wire, and what the receiver's tcpdump
// captured (host-rx) — side by side, with expectations checked against
// them, one pcapng for the whole run and an HTML report.
//
// Scenarios are Go values (Builtin, Lookup) whose structs map 1:1 to a
// YAML file (see Scenario). Run creates everything under unique names
// (lab-<scenario>-<host>-<hex>) and removes it at the end, also on error
// and when its context is cancelled (Ctrl-C in `vnic lab run`).
//
// Equivalent to, per host: ip netns add lab-...; vnic up --netns lab-...
// with the NICs' wires joined; then the steps' commands under
// ip netns exec, and tcpdump at three points per NIC.
package lab
