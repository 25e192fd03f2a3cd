// Package traffic is vnic's built-in traffic generator, so that labs,
// tests and benchmarks never depend on iperf3 or nc being installed. It
// drives the gVisor peer's RFC services (or any server that behaves like
// them) from inside a named network namespace:
//
//   - Send: TCP bulk transfer to a discard service (port 9), host → peer.
//   - Receive: TCP bulk transfer from a chargen service (port 19), peer → host.
//   - Echo: data through an echo service (port 7), verified byte for byte.
//   - UDPSend: UDP datagrams to a discard service, with UDP_SEGMENT (USO)
//     when gsoSize > 0, so the NIC sees UDP super-packets.
//   - Ping: ICMP/ICMPv6 echo over a raw socket.
//
// Every socket is created inside Options.Netns (nsutil.Do), and stays
// there after Do returns. Nothing blocks without a bound: a run stops at
// Options.Duration or after Options.Bytes, whichever comes first; a
// connect, and any single read or write that makes no progress, fails
// after Options.Timeout; and cancelling the context aborts every pending
// operation at once (the call then returns what was moved so far with
// ctx.Err()).
//
// Addresses are literal "IP:port" ("198.18.0.2:9", "[fd00::2]:19"); a host
// name is resolved before entering the namespace (in the caller's).
//
// What the figures mean:
//
//   - Send counts the bytes the kernel accepted on each socket, then
//     half-closes and waits for the server to close in turn: a discard
//     server closes only after it has read everything, so when Send returns
//     every counted byte was delivered, and Elapsed includes that drain.
//   - Receive counts bytes read; Elapsed ends at the last read.
//   - UDPSend counts payload bytes handed to the kernel; datagrams lost on
//     the way are not known to the sender (compare with the receiver's
//     count, e.g. daemon.Stats().Peer.Discarded).
//
// Gbps is Bytes × 8 / Elapsed, in 10⁹ bits per second (what iperf3 calls
// Gbits/sec).
package traffic
