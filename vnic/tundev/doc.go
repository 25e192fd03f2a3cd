// Package tundev is vnic's device layer: a Linux TUN device opened with
// IFF_VNET_HDR and virtio-net offloads, so that the kernel hands the
// daemon GSO super-packets (up to 64 KiB, partial checksums) and takes
// super-packets back, each frame a virtio_net_hdr followed by an IP packet
// (drivers/net/tun.c: tun_get_user, tun_put_user; the header is parsed by
// virtio_net_hdr_to_skb and built by virtio_net_hdr_from_skb).
//
// Open negotiates the offloads with TUNSETOFFLOAD and falls back when the
// kernel refuses a set (tun.c: set_offload returns EINVAL for any bit it
// does not know). The UDP tunnel offloads (Linux 6.17+) come with the
// 24-byte virtio_net_hdr_v1_hash_tunnel (virtio.HdrTunnel); on an older
// kernel they are refused and the device keeps the 10-byte header. Read and Write move batches of frames through
// caller-owned buffers with a headroom offset, like wireguard-go's tun
// package, but hand frames over as the kernel made them: segmenting and
// coalescing are the jobs of packages segment and coalesce.
//
// The file descriptor is non-blocking and registered with Go's netpoller:
// a Read waits without a thread of its own, and Close wakes it.
package tundev
