package bench

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tributary-io/tributary/internal/testenv"
)

// scope is the testing.TB that internal/testenv's helpers get from the
// bench: Fatal ends the phase that is running (not the run), and Cleanup
// functions (stopping the processes testenv started, removing temporary
// directories) run when the scope ends. A scope may outlive a phase: the
// broker of phase c serves phases d and e.
//
// Only the methods testenv calls are implemented; the embedded nil
// interface makes any other one panic, which is a bug in the bench.
type scope struct {
	testing.TB
	name     string
	dir      string
	log      *slog.Logger
	cleanups []func()
	failed   bool
}

// phaseError is what Fatal panics with; runPhase recovers it.
type phaseError struct{ msg string }

func newScope(name, dir string, log *slog.Logger) *scope {
	return &scope{name: name, dir: dir, log: log}
}

func (s *scope) Helper()          {}
func (s *scope) Name() string     { return s.name }
func (s *scope) Failed() bool     { return s.failed }
func (s *scope) Cleanup(f func()) { s.cleanups = append(s.cleanups, f) }

func (s *scope) Logf(format string, args ...any) { s.log.Info(fmt.Sprintf(format, args...)) }
func (s *scope) Log(args ...any)                 { s.log.Info(fmt.Sprint(args...)) }

func (s *scope) Errorf(format string, args ...any) {
	s.failed = true
	s.log.Error(fmt.Sprintf(format, args...))
}

func (s *scope) Fatalf(format string, args ...any) {
	s.failed = true
	panic(phaseError{fmt.Sprintf(format, args...)})
}

func (s *scope) Fatal(args ...any) {
	s.failed = true
	panic(phaseError{fmt.Sprint(args...)})
}

func (s *scope) FailNow() { s.Fatal("failed") }

func (s *scope) TempDir() string {
	d, err := os.MkdirTemp(s.dir, strings.ReplaceAll(s.name, "/", "-")+"-")
	if err != nil {
		s.Fatalf("temporary directory: %v", err)
	}
	s.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// close runs the cleanups, last registered first.
func (s *scope) close() {
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		s.cleanups[i]()
	}
	s.cleanups = nil
}

// fatalIf ends the phase with msg if err is not nil.
func (s *scope) fatalIf(err error, format string, args ...any) {
	if err != nil {
		s.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}

// proc is a process the bench started, with where it listens.
type proc struct {
	*testenv.Process
	Addr string // host:port
	URL  string // http://host:port, for HTTP servers
	// GRPCAddr is the OTLP gRPC server's host:port, where there is one.
	GRPCAddr string
}

// startBroker starts the devbroker (memory only) with args and waits until
// it listens.
func (b *bench) startBroker(s *scope, args ...string) *proc {
	port := testenv.FreePort(s)
	p := testenv.StartProcess(s, "devbroker", b.bin("devbroker"), append([]string{"-port", fmt.Sprint(port)}, args...))
	addr := testenv.Addr(port)
	waitPort(s, p, addr, 30*time.Second)
	return &proc{Process: p, Addr: addr}
}

// startGateway starts a gateway writing to broker and waits until it is
// ready. Its OTLP gRPC server listens on a free loopback port too
// (GRPCAddr), not on the default :4317.
func (b *bench) startGateway(s *scope, broker string, args ...string) *proc {
	port := testenv.FreePort(s)
	addr := testenv.Addr(port)
	grpcAddr := testenv.Addr(testenv.FreePort(s))
	p := testenv.StartProcess(s, "gateway", b.bin("gateway"), append([]string{
		"-http.listen-addr=" + addr, "-otlp.grpc.listen-addr=" + grpcAddr, "-kafka.brokers=" + broker, "-log.level=warn",
	}, args...))
	url := "http://" + addr
	testenv.WaitHTTP(s, p, url+"/-/ready", 60*time.Second)
	return &proc{Process: p, Addr: addr, URL: url, GRPCAddr: grpcAddr}
}

// startIngester starts an ingester reading from broker and waits until it
// is alive (/-/healthy: ready needs partitions, which may take a while).
func (b *bench) startIngester(s *scope, broker string, args ...string) *proc {
	port := testenv.FreePort(s)
	addr := testenv.Addr(port)
	p := testenv.StartProcess(s, "ingester", b.bin("ingester"), append([]string{
		"-http.listen-addr=" + addr, "-kafka.brokers=" + broker, "-log.level=warn",
	}, args...))
	url := "http://" + addr
	testenv.WaitHTTP(s, p, url+"/-/healthy", 60*time.Second)
	return &proc{Process: p, Addr: addr, URL: url}
}

// startPrometheus starts a fresh Prometheus that accepts remote write and
// samples a day out of order, as the sinks of tests and the demo.
func startPrometheus(s *scope) *proc {
	p := testenv.Prometheus(s, testenv.SinkConfig)
	return &proc{Process: p.Proc, Addr: testenv.Addr(p.Port), URL: p.URL}
}

// stop ends p gracefully (SIGTERM, killed after 15 s).
func stop(procs ...*proc) {
	for _, p := range procs {
		if p != nil {
			_ = p.Stop(15 * time.Second)
		}
	}
}

func (b *bench) bin(name string) string { return filepath.Join(b.cfg.Bin, name) }

// checkBinaries fails unless every binary the bench starts is in Bin.
func (b *bench) checkBinaries() error {
	for _, name := range []string{"devbroker", "gateway", "ingester", "agent"} {
		if _, err := exec.LookPath(b.bin(name)); err != nil {
			return fmt.Errorf("%s missing (run make build): %w", b.bin(name), err)
		}
	}
	return nil
}

// waitPort waits until something accepts connections on addr, while p lives.
func waitPort(s *scope, p *testenv.Process, addr string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.Exited() {
			s.Fatalf("%s exited before listening on %s:\n%s", p.Name, addr, p.Output())
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.Fatalf("nothing listens on %s after %s", addr, timeout)
}
