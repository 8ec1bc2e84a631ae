package bounded

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/reject"
)

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func gunzipReader(t *testing.T, b []byte) io.Reader {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	return zr
}

func TestReadAll(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 50_000) // 500 kB
	t.Run("within the limit, every buffer reserved first", func(t *testing.T) {
		reserved, largest := 0, 0
		got, err := ReadAll(gunzipReader(t, gzipped(data)), 0, len(data), func(n int) error {
			reserved += n
			largest = max(largest, n)
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, data, got)
		require.GreaterOrEqual(t, largest, cap(got), "the buffer in use was reserved")
		require.GreaterOrEqual(t, reserved, len(data))
	})
	t.Run("a right hint is one buffer", func(t *testing.T) {
		calls := 0
		got, err := ReadAll(gunzipReader(t, gzipped(data)), len(data)+1, len(data), func(int) error { calls++; return nil })
		require.NoError(t, err)
		require.Equal(t, data, got)
		require.Equal(t, 1, calls)
	})
	t.Run("one byte over the limit", func(t *testing.T) {
		_, err := ReadAll(gunzipReader(t, gzipped(data)), 0, len(data)-1, nil)
		status, _ := reject.Status(err)
		require.Equal(t, http.StatusRequestEntityTooLarge, status)
	})
	t.Run("a bomb stops at the budget", func(t *testing.T) {
		errBudget := errors.New("budget spent")
		reserved := 0
		_, err := ReadAll(gunzipReader(t, gzipped(make([]byte, 64<<20))), 0, 0, func(n int) error {
			if reserved+n > 4<<20 {
				return errBudget
			}
			reserved += n
			return nil
		})
		require.ErrorIs(t, err, errBudget)
		require.LessOrEqual(t, reserved, 4<<20)
	})
	t.Run("corrupt", func(t *testing.T) {
		b := gzipped(data)
		b[len(b)/2] ^= 0xff
		_, err := ReadAll(gunzipReader(t, b), 0, 0, nil)
		status, _ := reject.Status(err)
		require.Equal(t, http.StatusBadRequest, status)
	})
}
