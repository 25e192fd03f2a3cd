// Package nsutil manages named network namespaces and configures links in
// them, the way `ip netns` and `ip link`/`ip addr`/`ip route` do, for the
// vnic daemon (`vnic up --netns NAME`) and its tests.
//
// A named namespace is a network namespace bind-mounted at
// /run/netns/NAME, exactly as iproute2 makes it (ip/ipnetns.c:
// netns_add), so `ip netns exec NAME`, `ip -n NAME` and `ethtool`
// inside `ip netns exec` see the same namespace vnic uses.
//
// Entering a namespace is per OS thread (setns(2) changes only the calling
// thread), so everything that enters one runs on a goroutine locked to its
// thread (runtime.LockOSThread), and the thread is moved back before it is
// unlocked. If moving back fails, the goroutine exits still locked, and the
// Go runtime then terminates the thread instead of reusing it in the wrong
// namespace. File descriptors opened inside a namespace (sockets, TUN
// devices, netlink handles) stay bound to it and can be used from any
// thread afterwards; that is how Handle and the daemon's devices work.
//
// Ownership: Use, Lease.Release and Sweep let vnic remove only the named
// namespaces it created. A Record (under OwnerDir) holds each one's ID —
// the nsfs device and inode and the netns cookie, so that a name deleted
// and made anew by someone else is not taken for vnic's — and every vnic
// process using it holds a flock(2) on the record, which the kernel drops
// when the process dies, even by kill -9. The last user removes the
// namespace; Sweep removes those whose users all died. Only names have
// owners: a namespace given by path is never created or removed.
//
// Linux only; elsewhere every function returns an error wrapping
// errors.ErrUnsupported.
package nsutil
