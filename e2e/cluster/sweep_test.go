package cluster

import (
	"os"
	"path/filepath"
	"testing"
)

// removeCgroupTree removes directories deepest first with rmdir alone, as
// cgroupfs requires; ordinary empty directories behave the same.
func TestRemoveCgroupTree(t *testing.T) {
	root := filepath.Join(t.TempDir(), "swarmsec-e2e-run")
	for _, d := range []string{"a/b/c", "a/d", "e"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeCgroupTree(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", root, err)
	}
	if err := removeCgroupTree(root); err != nil {
		t.Fatalf("removing a missing tree: %v", err)
	}
}
