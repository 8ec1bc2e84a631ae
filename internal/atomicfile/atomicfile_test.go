package atomicfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// Write replaces the file whole with the mode asked for, and leaves no
// temporary file, whether it succeeds or fails.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "table.yaml")
	require.NoError(t, os.WriteFile(path, []byte("old, and longer than the new"), 0o600))
	require.NoError(t, Write(path, []byte("new"), 0o644))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "new", string(got))
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), st.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left")

	// A path that is a directory cannot be replaced: an error, the
	// directory as it was, nothing left next to it.
	sub := filepath.Join(dir, "sub")
	require.NoError(t, os.Mkdir(sub, 0o755))
	require.Error(t, Write(sub, []byte("x"), 0o644))
	st, err = os.Stat(sub)
	require.NoError(t, err)
	require.True(t, st.IsDir())
	entries, err = os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 2, "no temporary file left after a failure")
}
