package ethtool

import "strings"

// legacy is ethtool's off_flag_def: the old names for groups of kernel
// features, with the pattern (one '*' at most) that assigns a kernel
// feature to its group; a feature belongs to the first group it matches.
var legacy = []struct{ short, long, pattern string }{
	{"rx", "rx-checksumming", "rx-checksum"},
	{"tx", "tx-checksumming", "tx-checksum-*"},
	{"sg", "scatter-gather", "tx-scatter-gather*"},
	{"tso", "tcp-segmentation-offload", "tx-tcp*-segmentation"},
	{"ufo", "udp-fragmentation-offload", "tx-udp-fragmentation"},
	{"gso", "generic-segmentation-offload", "tx-generic-segmentation"},
	{"gro", "generic-receive-offload", "rx-gro"},
	{"lro", "large-receive-offload", "rx-lro"},
	{"rxvlan", "rx-vlan-offload", "rx-vlan-hw-parse"},
	{"txvlan", "tx-vlan-offload", "tx-vlan-hw-insert"},
	{"ntuple", "ntuple-filters", "rx-ntuple-filter"},
	{"rxhash", "receive-hashing", "rx-hashing"},
}

// patternMatch is ethtool's flag_pattern_match.
func patternMatch(name, pattern string) bool {
	before, after, star := strings.Cut(pattern, "*")
	if !star {
		return name == pattern
	}
	return len(name) >= len(before)+len(after) && strings.HasPrefix(name, before) && strings.HasSuffix(name, after)
}

// group returns the index in legacy of the group kernel feature name
// belongs to, or -1.
func group(name string) int {
	for i, l := range legacy {
		if patternMatch(name, l.pattern) {
			return i
		}
	}
	return -1
}

// legacyIndex returns the index in legacy of a short or long legacy name,
// or -1.
func legacyIndex(name string) int {
	for i, l := range legacy {
		if name == l.short || name == l.long {
			return i
		}
	}
	return -1
}

// State is one kernel feature's state, as ETHTOOL_GFEATURES reports it.
type State struct {
	// Active: the feature is on.
	Active bool
	// Requested: the user (or driver) asked for it; it can be requested
	// but not active when it depends on a feature that is off.
	Requested bool
	// Fixed: it cannot be changed (not in hw_features, or never_changed);
	// `ethtool -k` prints "[fixed]".
	Fixed bool
}

// withLegacy returns the feature map of states: every kernel name, plus
// each legacy group's short and long name, on when any of the group's
// features is (ethtool's dump_features). UFO's names are left out, as
// ethtool leaves them out: no kernel with ethtool netlink has UFO.
func withLegacy(states map[string]State) map[string]bool {
	m := make(map[string]bool, len(states)+2*len(legacy))
	for _, l := range legacy {
		if l.short != "ufo" {
			m[l.short], m[l.long] = false, false
		}
	}
	for name, s := range states {
		m[name] = s.Active
		if g := group(name); g >= 0 && s.Active && legacy[g].short != "ufo" {
			m[legacy[g].short], m[legacy[g].long] = true, true
		}
	}
	return m
}
