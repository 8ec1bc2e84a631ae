package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
	buildOut  []byte
)

// Binary builds the project's commands once per test process and returns
// the path of cmd/<name>.
func Binary(t testing.TB, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "tributary-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/...")
		cmd.Dir = RepoRoot(t)
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build commands: %v\n%s", buildErr, buildOut)
	}
	return filepath.Join(binDir, name)
}

// RemoveBinaries deletes what Binary built; call it from TestMain.
func RemoveBinaries() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}
