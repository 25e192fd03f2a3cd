package lab

import (
	"path/filepath"
	"testing"

	"vnic/vnic/kerneltest"
)

// TestJumboExample runs the documented example file end to end.
func TestJumboExample(t *testing.T) {
	if testing.Short() {
		t.Skip("root lab run")
	}
	kerneltest.RequireRoot(t)
	s, err := LoadFile(filepath.Join(examples, "tso-capture-jumbo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	runPasses(t, *s)
}
