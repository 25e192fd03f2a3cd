package ethtool

// SetForcePoll makes Watch poll instead of listening for notifications.
func SetForcePoll(b bool) { forcePoll = b }
