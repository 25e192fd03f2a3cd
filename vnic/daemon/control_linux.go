package daemon

import (
	"errors"
	"fmt"
	"net"

	"vnic/vnic/safefile"
)

// listenControl listens on the control socket path, mode 0600. A socket
// a killed daemon left there is replaced; nothing else at path is touched
// (safefile.ListenUnix); a daemon that answers there is ErrRunning.
func listenControl(path string) (net.Listener, error) {
	l, err := safefile.ListenUnix(path)
	if errors.Is(err, safefile.ErrSocketInUse) {
		return nil, fmt.Errorf("%w: %s answers; stop that daemon first, or choose another --name", ErrRunning, path)
	}
	if err != nil {
		return nil, fmt.Errorf("control socket: %w (or choose another --control path)", err)
	}
	return l, nil
}
