package logs

import "github.com/prometheus/client_golang/prometheus"

// metrics are the tailer's self-metrics.
type metrics struct {
	filesTailed      prometheus.Gauge
	readBytes        prometheus.Counter
	readLines        prometheus.Counter
	sentLines        prometheus.Counter
	droppedLines     *prometheus.CounterVec
	droppedBytes     *prometheus.CounterVec
	cutLines         prometheus.Counter
	malformedLines   prometheus.Counter
	rotations        prometheus.Counter
	truncations      prometheus.Counter
	positionsLag     prometheus.Gauge
	batchesInFlight  prometheus.Gauge
	positionsWrites  *prometheus.CounterVec
	positionsCorrupt prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		filesTailed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_agent_logs_files_tailed",
			Help: "Files open for reading.",
		}),
		readBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_agent_logs_read_bytes_total",
			Help: "Bytes read from log files.",
		}),
		readLines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_agent_logs_read_lines_total",
			Help: "Log lines read (after joining partial lines).",
		}),
		sentLines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_agent_logs_sent_lines_total",
			Help: "Log lines the gateway acknowledged.",
		}),
		droppedLines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_agent_logs_dropped_lines_total",
			Help: "Log lines read but not delivered, by reason: refused (the gateway refused them for ever, a 4xx other than 408/429).",
		}, []string{"reason"}),
		droppedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_agent_logs_dropped_bytes_total",
			Help: "Bytes of files never read, by reason: deleted (a deleted file was held deleted_file_max_hold and closed unfinished).",
		}, []string{"reason"}),
		cutLines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_agent_logs_cut_lines_total",
			Help: "Lines longer than max_line_bytes, shipped cut to that size.",
		}),
		malformedLines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_agent_logs_malformed_lines_total",
			Help: "Lines of a container log in neither CRI nor Docker JSON format (shipped raw), or JSON lines without a usable timestamp field.",
		}),
		rotations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_agent_logs_rotations_total",
			Help: "Files seen renamed away from their path (rotation by rename).",
		}),
		truncations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_agent_logs_truncations_total",
			Help: "Files seen truncated or overwritten in place (copytruncate).",
		}),
		positionsLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_agent_logs_positions_lag_bytes",
			Help: "Bytes of the tailed files not yet acknowledged by the gateway (unread, read and in flight).",
		}),
		batchesInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_agent_logs_batches_in_flight",
			Help: "Batches sent and not yet acknowledged.",
		}),
		positionsWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_agent_logs_positions_writes_total",
			Help: "Writes of the positions file by outcome (ok, error).",
		}, []string{"outcome"}),
		positionsCorrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_agent_logs_positions_corrupt_total",
			Help: "Positions files found corrupt at start (renamed aside; current files read from their start).",
		}),
	}
	reg.MustRegister(m.filesTailed, m.readBytes, m.readLines, m.sentLines, m.droppedLines, m.droppedBytes, m.cutLines,
		m.malformedLines, m.rotations, m.truncations, m.positionsLag, m.batchesInFlight,
		m.positionsWrites, m.positionsCorrupt)
	return m
}
