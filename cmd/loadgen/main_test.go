package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// The result is exactly one JSON line on stdout with every field, whatever
// the mode: scripts read fields without looking at the mode.
func TestOutputIsOneJSONLineWithEveryField(t *testing.T) {
	for _, payload := range []string{"remote-write", "loki-proto", "loki-json"} {
		t.Run(payload, func(t *testing.T) {
			var out bytes.Buffer
			self := strconv.Itoa(os.Getpid())
			err := runMain([]string{"-mode=discard", "-payload=" + payload, "-duration=200ms", "-progress=0",
				"-series=20000", "-streams=200", "-watch-pids=" + self, "-log.level=warn"}, &out)
			require.NoError(t, err)
			require.Equal(t, 1, bytes.Count(out.Bytes(), []byte("\n")), "one line: %s", out.String())

			var res map[string]any
			require.NoError(t, json.Unmarshal(out.Bytes(), &res))
			for _, field := range []string{
				"mode", "target", "concurrency", "duration_s", "requests", "samples", "samples_per_sec",
				"entries", "entries_per_sec", "records", "records_per_sec", "bytes_per_sec", "body_bytes_per_sec",
				"p50_ms", "p99_ms", "status_codes", "errors", "complete", "pids", "self",
			} {
				require.Contains(t, res, field)
			}
			require.Equal(t, "discard", res["mode"])
			require.Positive(t, res["requests"])
			require.Positive(t, res["bytes_per_sec"])
			if payload == "remote-write" {
				require.Positive(t, res["samples_per_sec"])
			} else {
				require.Positive(t, res["entries_per_sec"])
			}
			require.Equal(t, res["requests"], res["status_codes"].(map[string]any)["discarded"])
			pids := res["pids"].(map[string]any)
			require.Contains(t, pids, self)
			for _, st := range []any{pids[self], res["self"]} {
				m := st.(map[string]any)
				for _, field := range []string{"cpu_seconds", "cpu_cores", "rss_max_mb", "rss_hwm_mb"} {
					require.Contains(t, m, field)
				}
				require.Positive(t, m["rss_max_mb"])
				require.NotContains(t, m, "error")
			}
		})
	}
}

func TestBadFlagsFail(t *testing.T) {
	var out bytes.Buffer
	require.Error(t, runMain([]string{"-mode=remote-write"}, &out), "no target")
	require.Error(t, runMain([]string{"-mode=discard", "-watch-pids=notapid"}, &out))
	require.Empty(t, out.String())
}

func TestBenchBadFlagsFail(t *testing.T) {
	var out bytes.Buffer
	require.ErrorContains(t, runMain([]string{"bench", "-seconds=0"}, &out), "seconds")
	require.ErrorContains(t, runMain([]string{"bench", "-bin=" + t.TempDir()}, &out), "make build", "binaries missing")
	require.Empty(t, out.String())
}
