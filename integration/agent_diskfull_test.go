package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tributary-io/tributary/internal/testenv"
)

// limitFileSize sets the soft RLIMIT_FSIZE of the running process pid: a
// write past bytes fails with EFBIG ("file too large"), as a write to a full
// disk fails with ENOSPC. Go ignores SIGXFSZ unless notified, so the
// process gets the error instead of dying of the signal. No root needed.
func limitFileSize(t *testing.T, pid int, bytes uint64) {
	t.Helper()
	require.NoError(t, unix.Prlimit(pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: bytes, Max: unix.RLIM_INFINITY}, nil))
}

// newestSegment is the size of the WAL segment the agent writes now.
func newestSegment(t *testing.T, walDir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(walDir, "wal"))
	require.NoError(t, err)
	var segs []string
	for _, e := range entries {
		if !e.IsDir() {
			segs = append(segs, e.Name())
		}
	}
	require.NotEmpty(t, segs)
	slices.Sort(segs) // zero-padded numbers
	fi, err := os.Stat(filepath.Join(walDir, "wal", segs[len(segs)-1]))
	require.NoError(t, err)
	return fi.Size()
}

func agentPage(t *testing.T, a *agentProc, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(a.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// A WAL that cannot be written (here: the agent's file-size limit lowered
// to the current segment's size, so every WAL write fails with EFBIG, as on
// a full disk) costs the scrapes of that time, not the agent: it keeps
// running and serving /-/healthy, says so on /metrics and /status, and
// writes again, and sends, as soon as there is room.
func TestAgentWALWriteFailureDoesNotCrash(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2)
	sink := testenv.Prometheus(t, testenv.SinkConfig)
	gw := startGateway(t, k.Addr)
	startIngester(t, k.Addr, sink.URL)

	probe := startTarget(t, "tributary_agent_diskfull_probe 1\n")
	dir := t.TempDir()
	cfg, wal := filepath.Join(dir, "agent.yml"), filepath.Join(dir, "data")
	writeFile(t, cfg, agentConfig("full", gw.URL, wal, staticJob("probe", probe.addr)))
	a := startAgent(t, cfg, testenv.FreePort(t))
	const appended = "tributary_agent_samples_appended_total"
	const failures = "tributary_agent_wal_append_failures_total"
	waitFor(t, func() bool { return a.metric(t, appended) >= 3 })

	// The disk is full.
	limitFileSize(t, a.PID(), uint64(newestSegment(t, wal)))
	waitFor(t, func() bool { return a.metric(t, failures) >= 1 })
	stuck := a.metric(t, appended)
	waitFor(t, func() bool { return a.metric(t, failures) >= 5 })
	require.Equal(t, stuck, a.metric(t, appended), "samples appended while every WAL write fails")
	require.False(t, a.Exited(), "the agent exited on a failing WAL")
	code, body := agentPage(t, a, "/-/healthy")
	require.Equal(t, http.StatusOK, code, body)
	_, status := agentPage(t, a, "/status")
	require.Contains(t, status, "appends:         FAILING since")
	require.Contains(t, status, "file too large")

	// Room again: the WAL is written, and what is scraped from now on
	// reaches the sink.
	limitFileSize(t, a.PID(), unix.RLIM_INFINITY)
	room := time.Now()
	waitFor(t, func() bool { return a.metric(t, appended) >= stuck+3 })
	_, status = agentPage(t, a, "/status")
	require.Contains(t, status, "appends:         ok")
	testenv.Eventually(t, 60*time.Second, func() error {
		res, err := sink.Query(`timestamp(tributary_agent_diskfull_probe{cluster="full",job="probe"})`, time.Now())
		if err != nil {
			return err
		}
		if len(res) != 1 || res[0].Value < float64(room.UnixMilli())/1000 {
			return fmt.Errorf("sink has no sample scraped after the WAL recovered at %s: %v", room, res)
		}
		return nil
	})
	require.False(t, a.Exited())
}
