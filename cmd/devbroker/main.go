// Command devbroker is a Kafka-compatible broker for DEVELOPMENT ONLY: it
// wraps franz-go's kfake (an in-memory implementation of the Kafka wire
// protocol) with a data directory so topics survive restarts. It has no
// replication, no security and no tuning; run Apache Kafka in production.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	fs := flag.NewFlagSet("devbroker", flag.ExitOnError)
	port := fs.Int("port", 9092, "Port to listen on (127.0.0.1 only).")
	dataDir := fs.String("data-dir", "", "Directory to persist topics in across restarts. Empty: memory only.")
	topics := fs.String("topics", "tributary.metrics,tributary.logs,tributary.spans,tributary.dlq", "Topics to create at start.")
	partitions := fs.Int("partitions", 4, "Partitions per created topic.")
	// Off by default, as Kafka's own log.flush settings: every produce is
	// written to the data dir (the page cache) before it is acknowledged,
	// so a killed devbroker loses nothing; only a crash of the host can
	// lose acknowledged records, and this single node has no replica to
	// cover that. On: fsync each batch before the acknowledgement.
	syncWrites := fs.Bool("sync-writes", false, "With -data-dir, fsync every produced batch before acknowledging it, so acknowledged records survive a crash of the host (not only of devbroker). Slower.")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "devbroker: a single-node Kafka-protocol broker for development and tests (franz-go kfake). Not for production.")
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])

	opts := []kfake.Opt{kfake.Ports(*port)}
	if *dataDir != "" {
		if err := os.MkdirAll(*dataDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "devbroker:", err)
			os.Exit(1)
		}
		opts = append(opts, kfake.DataDir(*dataDir))
		if *syncWrites {
			opts = append(opts, kfake.SyncWrites())
		}
	}
	var names []string
	for _, t := range strings.Split(*topics, ",") {
		if t = strings.TrimSpace(t); t != "" {
			names = append(names, t)
		}
	}
	if len(names) > 0 {
		opts = append(opts, kfake.SeedTopics(int32(*partitions), names...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "devbroker:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "devbroker (development only) listening on %s, data dir %q\n", strings.Join(c.ListenAddrs(), ","), *dataDir)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	c.Close()
}
