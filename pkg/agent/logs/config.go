// Package logs is the agent's log tailer: it finds container log files
// (and configured other files), follows them across rotation by rename and
// by copytruncate, parses the CRI and Docker JSON formats, and pushes the
// lines to the gateway as Loki protobuf. A file's position on disk moves
// only after the gateway acknowledged its lines: at-least-once, with no
// repeats after a clean restart.
package logs

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Config is the logs section of the agent's configuration.
type Config struct {
	// PodsDir is where the kubelet keeps container logs:
	// <pods_dir>/<namespace>_<pod>_<uid>/<container>/<restart>.log.
	PodsDir string `yaml:"pods_dir"`
	// SkipContainerLogs turns the container logs off (only Files are read).
	SkipContainerLogs bool `yaml:"skip_container_logs"`
	// PositionsFile is where the acknowledged offsets are kept; it must
	// survive the agent's restarts (a hostPath). Required.
	PositionsFile string `yaml:"positions_file"`
	// PodLabels are pod labels copied onto the streams (names sanitized
	// to Loki's: app.kubernetes.io/name → app_kubernetes_io_name).
	PodLabels []string `yaml:"pod_labels"`
	// OptOutAnnotation: a pod with this annotation set to "false" is not
	// collected.
	OptOutAnnotation string `yaml:"opt_out_annotation"`
	// Files are other files (not container logs) to tail.
	Files []FileConfig `yaml:"files"`

	PollInterval       model.Duration `yaml:"poll_interval"`
	BatchMaxBytes      int            `yaml:"batch_max_bytes"`
	BatchMaxWait       model.Duration `yaml:"batch_max_wait"`
	MaxBatchesInFlight int            `yaml:"max_batches_in_flight"`
	MaxLineBytes       int            `yaml:"max_line_bytes"`
	DeletedFileMaxHold model.Duration `yaml:"deleted_file_max_hold"`
}

// FileConfig is one set of files that are not container logs.
type FileConfig struct {
	// Paths are globs (filepath.Match syntax). Rotated siblings of a match
	// (<name>.<suffix>, <name>-<suffix>, <stem>-<suffix>.<ext>) are
	// followed too; compressed ones (.gz, .bz2, .xz, .zst) are skipped.
	Paths []string `yaml:"paths"`
	// Labels are the streams' labels. cluster is added; node is added
	// unless set here. A sidecar agent, which has no pod informer, sets
	// node, namespace, pod and container from the downward API
	// (${NODE_NAME}, ...) so its streams read like container logs.
	Labels map[string]string `yaml:"labels"`
	// Format: raw (default) or json.
	Format Format `yaml:"format"`
	// TimestampField is the JSON field (dot-separated path) holding the
	// entry's time, for format json; empty or missing: time of reading.
	TimestampField string `yaml:"timestamp_field"`
}

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// reserved labels are set by the agent on every stream of files: the
// cluster is the agent's identity, stream is a container log's stdout or
// stderr.
var reserved = []string{"cluster", "stream"}

// Validate fills defaults and checks the section.
func (c *Config) Validate() error {
	if c.PodsDir == "" {
		c.PodsDir = "/var/log/pods"
	}
	if c.PositionsFile == "" {
		return errors.New("positions_file: required (a file on a hostPath, e.g. /var/lib/tributary-agent/log-positions.json, so that positions survive restarts)")
	}
	if c.OptOutAnnotation == "" {
		c.OptOutAnnotation = "tributary.io/logs"
	}
	if c.PollInterval == 0 {
		// New files and rotations are seen within a second; appended
		// lines are read every 200ms regardless.
		c.PollInterval = model.Duration(time.Second)
	}
	if c.BatchMaxBytes == 0 {
		// 1 MiB, Promtail's batchsize: the gateway's default Kafka record
		// holds 1 MiB decoded, so a batch is never split.
		c.BatchMaxBytes = 1 << 20
	}
	if c.BatchMaxWait == 0 {
		// Promtail's batchwait: a line is in flight within a second.
		c.BatchMaxWait = model.Duration(time.Second)
	}
	if c.MaxBatchesInFlight == 0 {
		// One: the next batch fills while one is in flight, and the lines
		// of a stream reach the gateway in order. More overlap the round
		// trips of a far gateway, but a retried batch then lands after a
		// later one (Loki accepts that within its out-of-order window).
		// It is also the bound on what a kill -9 repeats.
		c.MaxBatchesInFlight = 1
	}
	if c.MaxLineBytes == 0 {
		// The gateway's default -limits.logs.max-line-bytes: a longer
		// line would be refused there.
		c.MaxLineBytes = 256 << 10
	}
	if c.DeletedFileMaxHold == 0 {
		// Long enough to finish a deleted file through a short gateway
		// outage; short enough not to pin a deleted 10 MiB file's disk
		// space for long (Vector's DiskPressure failure).
		c.DeletedFileMaxHold = model.Duration(5 * time.Minute)
	}
	switch {
	case c.BatchMaxBytes < 4<<10:
		return fmt.Errorf("batch_max_bytes %d: want at least 4096", c.BatchMaxBytes)
	case c.MaxBatchesInFlight < 1 || c.MaxBatchesInFlight > 64:
		return fmt.Errorf("max_batches_in_flight %d: want 1 to 64", c.MaxBatchesInFlight)
	case c.MaxLineBytes < 1<<10:
		return fmt.Errorf("max_line_bytes %d: want at least 1024", c.MaxLineBytes)
	case c.PollInterval < model.Duration(10*time.Millisecond):
		return fmt.Errorf("poll_interval %s: want at least 10ms", c.PollInterval)
	}
	for _, l := range c.PodLabels {
		if l == "" {
			return errors.New("pod_labels: empty label name")
		}
	}
	for i := range c.Files {
		if err := c.Files[i].validate(); err != nil {
			return fmt.Errorf("files[%d]: %w", i, err)
		}
	}
	if c.SkipContainerLogs && len(c.Files) == 0 {
		return errors.New("skip_container_logs with no files: nothing to tail")
	}
	return nil
}

func (f *FileConfig) validate() error {
	if len(f.Paths) == 0 {
		return errors.New("paths: at least one glob")
	}
	for _, p := range f.Paths {
		if _, err := filepath.Match(p, ""); err != nil {
			return fmt.Errorf("paths: %q: %w", p, err)
		}
	}
	if len(f.Labels) == 0 {
		return errors.New("labels: at least one (e.g. source: audit), so the streams can be told apart")
	}
	for k := range f.Labels {
		if !labelName.MatchString(k) {
			return fmt.Errorf("labels: %q is not a valid label name", k)
		}
		for _, r := range reserved {
			if k == r {
				return fmt.Errorf("labels: %q is set by the agent", k)
			}
		}
	}
	switch f.Format {
	case "":
		f.Format = FormatRaw
	case FormatRaw, FormatJSON, FormatContainer:
	default:
		return fmt.Errorf("format %q: want raw, json or container", f.Format)
	}
	if f.TimestampField != "" && f.Format != FormatJSON {
		return errors.New("timestamp_field needs format json")
	}
	return nil
}

// sanitizeLabel turns a Kubernetes label key into a Loki label name.
func sanitizeLabel(k string) string {
	var b strings.Builder
	for i, r := range k {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_', r >= '0' && r <= '9' && i > 0:
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}
