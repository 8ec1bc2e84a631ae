package exepages

import (
	"encoding/binary"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"reflect"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// Release unmaps the code that only start-up ran, and the program runs on
// from pages mapped back as they are touched.
func TestReleaseUnmapsTheExecutablesPages(t *testing.T) {
	// Start-up work, done once, as package initialisation is in the agent:
	// the type checker's code is not run again by this test.
	startUp(t)
	checker := reflect.ValueOf((*types.Config).Check).Pointer()
	require.True(t, mapped(t, checker), "the type checker's code should be mapped after it ran")
	before, err := Resident()
	require.NoError(t, err)

	released, err := Release()
	require.NoError(t, err)

	// Read through the kernel's page table (not our smaps parsing): the
	// start-up code's page is no longer mapped.
	require.False(t, mapped(t, checker), "the type checker's page is still mapped after Release")
	require.GreaterOrEqual(t, released, before/2, "Release reports what was resident")
	after, err := Resident()
	require.NoError(t, err)
	require.Less(t, after, before)
	t.Logf("resident %d, released %d, resident after %d", before, released, after)

	// Code used after the release runs from pages mapped back.
	require.Equal(t, "0x2a 42", fmt.Sprintf("%#x %v", 42, strconv.Itoa(42)))
}

func startUp(t *testing.T) {
	const src = `package p

type T struct{ a, b int }

func (t T) Sum() int { return t.a + t.b }

func F(xs []T) (n int) {
	for _, x := range xs {
		n += x.Sum()
	}
	return n
}
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", src, parser.ParseComments)
	require.NoError(t, err)
	_, err = new(types.Config).Check("p", fset, []*ast.File{f}, nil)
	require.NoError(t, err)
}

// mapped reports whether the page holding addr is mapped in this process
// (/proc/self/pagemap: bit 63 of the page's entry).
func mapped(t *testing.T, addr uintptr) bool {
	f, err := os.Open("/proc/self/pagemap")
	require.NoError(t, err)
	defer f.Close()
	var e [8]byte
	_, err = f.ReadAt(e[:], int64(addr/uintptr(os.Getpagesize()))*8)
	require.NoError(t, err)
	return binary.LittleEndian.Uint64(e[:])>>63 == 1
}
