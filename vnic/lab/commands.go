package lab

import (
	"errors"
	"os"
)

// ErrNotRoot is Run's error for a caller that is not root. Capabilities
// on the vnic binary do not make a lab work: its commands run through
// `ip netns exec`, which they do not reach, and its services bind port 9.
var ErrNotRoot = errors.New("vnic lab run needs root: run it as root, e.g. with sudo (it creates network namespaces and runs the scenario's commands as root)")

// Command is a shell command a scenario runs. It runs as root, with
// sh -c, inside a host's network namespace but on this machine's
// filesystem, with whatever root may do there: a scenario file is a
// script, and only files one trusts should be run. `vnic lab check FILE`
// prints them.
type Command struct {
	// Step is the step's number, from 1, and StepName its name.
	Step     int
	StepName string
	// Host is whose namespace it runs in.
	Host string
	// Kind is "setup" (Step.Setup) or "traffic" (a command traffic).
	Kind string
	// Run is the command line given to sh -c.
	Run string
}

// Commands returns every shell command s runs, in the order it runs them.
func (s Scenario) Commands() []Command {
	var cs []Command
	for i, st := range s.Steps {
		for _, c := range st.Setup {
			cs = append(cs, Command{Step: i + 1, StepName: st.Name, Host: c.Host, Kind: "setup", Run: c.Run})
		}
		if st.Traffic.Kind == TrafficCommand {
			cs = append(cs, Command{Step: i + 1, StepName: st.Name, Host: st.Traffic.From, Kind: "traffic", Run: st.Traffic.Command})
		}
	}
	return cs
}

// shellEnvVars are the variables of the caller's environment a
// scenario's commands see; nothing else is passed on (no tokens, proxies,
// LD_PRELOAD or agent sockets of whoever runs the lab).
var shellEnvVars = []string{"PATH", "HOME", "TERM", "LANG"}

// defaultPath is PATH for commands when the caller has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// shellEnv is the environment of a scenario's commands.
func shellEnv() []string {
	env := make([]string, 0, len(shellEnvVars))
	for _, k := range shellEnvVars {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		} else if k == "PATH" {
			env = append(env, "PATH="+defaultPath)
		}
	}
	return env
}
