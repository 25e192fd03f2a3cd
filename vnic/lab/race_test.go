//go:build race

package lab

// raceEnabled: under the race detector, TestBuiltinLabs runs the labs
// (their goroutines are what -race is for) but leaves the browser and
// tshark checks of the outputs to the plain run.
const raceEnabled = true
