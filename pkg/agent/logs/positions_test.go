package logs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// Positions round-trip through the file, which is replaced whole (no
// temporary file left next to it); a file that does not decode, or has
// another version, is renamed aside and reported.
func TestPositionsFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "positions.json")
	_, state, err := loadPositions(path)
	require.NoError(t, err)
	require.Equal(t, positionsMissing, state)

	a := []position{{Path: "/p/a.log", Dev: 1, Ino: 2, FPLen: 3, FPHash: fpHash([]byte("abc")), Offset: 40}}
	require.NoError(t, savePositions(path, a))
	b := []position{{Path: "/p/b.log", Dev: 1, Ino: 5, FPLen: 256, FPHash: 1 << 63, Offset: 7}, a[0]}
	require.NoError(t, savePositions(path, b))
	got, state, err := loadPositions(path)
	require.NoError(t, err)
	require.Equal(t, positionsLoaded, state)
	require.ElementsMatch(t, b, got)
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, ents, 1, "temporary files left: %v", ents)

	for name, content := range map[string]string{
		"torn":        `{"version":1,"files":[{"path":"/p/a.log","dev":1`,
		"version":     `{"version":2,"files":[]}`,
		"unknown key": `{"version":1,"files":[],"extra":1}`,
		"negative":    `{"version":1,"files":[{"path":"/p/a.log","offset":-1}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "positions.json")
			require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
			_, state, err := loadPositions(path)
			require.Error(t, err)
			require.Equal(t, positionsCorrupt, state)
			aside, _ := filepath.Glob(path + ".corrupt-*")
			require.Len(t, aside, 1)
			_, err = os.Stat(path)
			require.True(t, os.IsNotExist(err), "the corrupt file is still in place")
		})
	}
}
