// Package ethtool reads and changes a network device's offload features by
// the names ethtool uses, in any network namespace, and watches them for
// changes: what `ethtool -k DEV` shows and `ethtool -K DEV gro off` does,
// for the vnic daemon, which must react when a user turns GRO (or TSO, or
// checksum offload) off on its device.
//
// # Names
//
// The kernel knows each feature by a name from netdev_features_strings
// (net/ethtool/common.c): "rx-gro", "tx-tcp-segmentation",
// "tx-checksum-ip-generic", ... The ethtool program also has legacy names
// for groups of them (ethtool's off_flag_def): the long ones `ethtool -k`
// prints ("generic-receive-offload", "tcp-segmentation-offload",
// "tx-checksumming") and the short ones `ethtool -K` takes ("gro", "tso",
// "tx"). A group is on when any of its features is on, and setting a
// group sets all of its features that are not fixed:
//
//	short   long (ethtool -k)               kernel features
//	rx      rx-checksumming                 rx-checksum
//	tx      tx-checksumming                 tx-checksum-*
//	sg      scatter-gather                  tx-scatter-gather*
//	tso     tcp-segmentation-offload        tx-tcp*-segmentation
//	ufo     udp-fragmentation-offload       tx-udp-fragmentation (gone since 4.14)
//	gso     generic-segmentation-offload    tx-generic-segmentation
//	gro     generic-receive-offload         rx-gro
//	lro     large-receive-offload           rx-lro
//	rxvlan  rx-vlan-offload                 rx-vlan-hw-parse
//	txvlan  tx-vlan-offload                 tx-vlan-hw-insert
//	ntuple  ntuple-filters                  rx-ntuple-filter
//	rxhash  receive-hashing                 rx-hashing
//
// Features returns a map holding all three kinds of names, so m["gro"],
// m["generic-receive-offload"] and m["rx-gro"] are the same thing, and
// every "name: on|off" line of `ethtool -k` has its entry (the tests check
// this against the ethtool program). USO has no legacy name: it is
// "tx-udp-segmentation".
//
// On a vnic TUN device (Linux 6.18, offloads csum|tso4|tso6|tso_ecn|uso4|
// uso6), `ethtool -K dev gro off` turns off rx-gro; `tso off` turns off
// tx-tcp-segmentation, tx-tcp-ecn-segmentation, tx-tcp6-segmentation and
// tx-tcp-mangleid-segmentation; `gso off` turns off
// tx-generic-segmentation; `tx off` turns off tx-checksum-ip-generic (the
// only tx-checksum-* a TUN can change), and with it the kernel turns off
// tx-udp-segmentation and every TSO feature (they need checksum offload;
// they stay "requested on").
//
// # Namespaces and cost
//
// The features are read and set with the SIOCETHTOOL ioctl
// (github.com/safchain/ethtool's FeaturesWithState and Change) on a socket
// created inside the target namespace, on a locked OS thread
// (nsutil.Do). The ioctl looks the device up in the socket's namespace,
// so a Handle, once open, works from any thread without entering the
// namespace again. One read is three ioctls (string set size, the names,
// the feature words), but safchain sizes its buffers for 32768 names, so
// a read allocates about 1 MiB and takes about 0.6 ms (0.8 ms for the
// one-shot Features, which also enters the namespace to open a socket;
// BenchmarkFeatures, 2-core Xeon, Linux 6.18). Polling a few times a
// second would be affordable; Watch avoids it.
//
// # Watching
//
// The kernel announces every feature change of a device, whoever makes it
// (ethtool over netlink or ioctl, TUNSETOFFLOAD, a dependency), as an
// ETHTOOL_MSG_FEATURES_NTF message on the "monitor" multicast group of the
// "ethtool" generic netlink family, in the device's namespace
// (netdev_features_change → NETDEV_FEAT_CHANGE → ethnl_notify_features).
// Watch listens there and reads the features only when told, so it costs
// nothing while nothing changes; it still re-reads every few seconds in
// case a notification was lost, and falls back to polling when the
// kernel has no ethtool netlink (CONFIG_ETHTOOL_NETLINK off).
package ethtool
