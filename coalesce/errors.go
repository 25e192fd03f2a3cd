package coalesce

import "errors"

// Errors returned by Coalesce. Malformed packets are never errors (they are
// passed on unmerged and counted in Stats); these report a batch the caller
// laid out wrongly, and Coalesce returns them before touching any buffer.
// They are wrapped with the numbers that explain them; use errors.Is.
var (
	// ErrOffset: the headroom offset is smaller than virtio.Size, so there
	// is no room to write the virtio_net_hdr in front of a packet.
	ErrOffset = errors.New("coalesce: offset smaller than the virtio_net_hdr")
	// ErrShortBuffer: a buffer is shorter than the headroom offset.
	ErrShortBuffer = errors.New("coalesce: buffer shorter than the headroom offset")
)
