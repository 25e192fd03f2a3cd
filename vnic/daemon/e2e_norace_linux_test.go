//go:build !race

package daemon_test

// raceEnabled: the race detector slows the data path about tenfold.
const raceEnabled = false
