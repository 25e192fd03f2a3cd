//go:build race

package nic

// raceEnabled: the race detector makes the data path ~10x slower; the
// randomized tests run fewer cases under it.
const raceEnabled = true
