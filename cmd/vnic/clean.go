package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"vnic/vnic/capture"
	"vnic/vnic/daemon"
	"vnic/vnic/nsutil"
	"vnic/vnic/safefile"
)

func newClean() *cobra.Command {
	return &cobra.Command{
		Use:   "clean",
		Short: "Remove what killed vnic processes left behind: their namespaces and stale sockets",
		Long: "A vnic process that is killed (kill -9, a crash, a machine's OOM killer) cannot remove what it\n" +
			"made: the namespaces `vnic up --netns NAME`, `--wire netns:B` and `vnic lab run` created, and\n" +
			"its control and live-capture sockets in " + daemon.RunDir + ". This removes them, printing each.\n" +
			"It removes a namespace only if vnic created it (its record in " + nsutil.OwnerDir + " names the\n" +
			"namespace's identity, not just its name) and no running vnic process uses it; a namespace\n" +
			"vnic did not create, a namespace given by path, and one a running daemon uses are never\n" +
			"touched. A socket is removed only if it is root's and nothing answers on it.\n" +
			"(`vnic lab clean` does the same for lab runs only.)",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return errors.New("vnic clean needs root: run it as root, e.g. with sudo")
			}
			w := cmd.OutOrStdout()
			removed, err := nsutil.Sweep(func(nsutil.Record) bool { return true })
			for _, r := range removed {
				fmt.Fprintf(w, "removed %s\n", r)
			}
			if err != nil { // e.g. RunDir not root's alone: its sockets are not trusted either
				return err
			}
			socks := 0
			dirs := []string{daemon.RunDir}
			if capture.TapDir != daemon.RunDir {
				dirs = append(dirs, capture.TapDir)
			}
			for _, dir := range dirs {
				for _, pat := range []string{"*.sock", "*.tap"} {
					ps, _ := filepath.Glob(filepath.Join(dir, pat))
					for _, p := range ps {
						// A socket younger than a second may be a starting
						// daemon's, between bind and listen: left alone.
						if st, err := os.Lstat(p); err != nil || time.Since(st.ModTime()) < time.Second {
							continue
						}
						// nil: the socket was there, stale, and is gone now.
						if safefile.RemoveStaleSocket(p) == nil {
							fmt.Fprintf(w, "removed stale socket %s\n", p)
							socks++
						}
					}
				}
			}
			if len(removed) == 0 && socks == 0 {
				fmt.Fprintln(w, "nothing to remove: no namespace or socket of a killed vnic process")
			}
			return nil
		},
	}
}
