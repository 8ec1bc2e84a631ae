// Package testenv starts the real servers the integration tests run against
// (Kafka via kfake, Prometheus, Loki, an Elasticsearch-compatible server) on
// free loopback ports, and stops every process it started when the test ends.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free when asked, for a
// server that cannot bind port 0 and report the port it got.
//
// The port is below the kernel's ephemeral range: a port the kernel hands
// out for bind(0) is also what it hands out as the local port of outgoing
// connections, and with hundreds of connections open during a test run one
// of them took such a port before its server could bind it (kfake: "bind:
// address already in use"). Below the range only explicit binds compete,
// and this process never hands out the same port twice.
func FreePort(t testing.TB) int {
	t.Helper()
	ports.mu.Lock()
	defer ports.mu.Unlock()
	lo, hi := staticPortRange()
	for range 1000 {
		if hi <= lo {
			break
		}
		port := lo + rand.IntN(hi-lo)
		if ports.handed[port] {
			continue
		}
		l, err := net.Listen("tcp", Addr(port))
		if err != nil {
			continue
		}
		l.Close()
		ports.handed[port] = true
		return port
	}
	// No range below the ephemeral one (or it is full): let the kernel choose.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var ports = struct {
	mu     sync.Mutex
	handed map[int]bool
}{handed: map[int]bool{}}

// staticPortRange is [lo, hi): the ports from 10000 up to the start of the
// kernel's ephemeral range (32768 by default), empty if that range starts
// lower. Below 10000 sit the well-known defaults of the servers tests run
// (9090, 9200, 3100, ...).
func staticPortRange() (lo, hi int) {
	const floor = 10000
	ephemeral := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				ephemeral = n
			}
		}
	}
	return floor, max(floor, ephemeral)
}

// Process is a child process started by a test. It is killed (with its
// process group) when the test ends, and also if the test binary dies
// (Pdeathsig), so no server outlives the test that started it.
type Process struct {
	Name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// StartProcess starts bin with args and extra env ("K=V") and registers
// cleanup with t. Output is kept and printed if the test fails.
func StartProcess(t testing.TB, name, bin string, args []string, env ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &syncBuffer{}
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the thread that started the child exits; keep it.
	runtime.LockOSThread()
	err := cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatalf("start %s (%s): %v", name, bin, err)
	}
	p := &Process{Name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("---- output of %s (pid %d) ----\n%s", name, cmd.Process.Pid, lastBytes(out.Bytes(), 8000))
		}
	})
	return p
}

// PID of the running process.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Output is everything the process printed so far.
func (p *Process) Output() string { return string(p.out.Bytes()) }

// Kill sends SIGKILL to the process group and waits for the process to exit.
// Used both for cleanup and for crash tests (no graceful shutdown).
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to timeout for a graceful exit, then kills.
func (p *Process) Stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s did not stop within %s", p.Name, timeout)
	}
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitHTTP polls url until it answers 200 or the timeout passes. It fails the
// test early if the process exits.
func WaitHTTP(t testing.TB, p *Process, url string, timeout time.Duration) {
	t.Helper()
	if err := waitHTTP(p, url, timeout); err != nil {
		t.Fatal(err)
	}
}

// startOnFreePorts starts a server whose ports start picks with FreePort,
// and waits until the URL start returns answers 200. A server that exits
// because another process bound one of its ports between FreePort and its
// own bind is started again on new ports, up to three times.
func startOnFreePorts(t testing.TB, timeout time.Duration, start func() (*Process, string)) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		p, url := start()
		err := waitHTTP(p, url, timeout)
		if err == nil {
			return
		}
		if attempt == 3 || !p.Exited() || !bytes.Contains(p.out.Bytes(), []byte("address already in use")) {
			t.Fatal(err)
		}
		t.Logf("%s: a port was taken before it could bind it; starting it on new ports", p.Name)
	}
}

func waitHTTP(p *Process, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited before %s was ready: %v\n%s", p.Name, url, p.err, lastBytes(p.out.Bytes(), 4000))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %s", url, timeout)
}

// CacheDir is where servers built from source are kept between runs
// ($TRIBUTARY_CACHE, default ~/.cache/tributary).
func CacheDir() string {
	if d := os.Getenv("TRIBUTARY_CACHE"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "tributary")
}

// RepoRoot is the module root (where go.mod is), found from the working dir.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Addr formats a loopback host:port.
func Addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// server is what the server helpers share: a process that can be stopped
// and started again on the same ports and data directory.
type server struct {
	// Proc is the running process (replaced by Restart). For a crash
	// instead of a clean shutdown, call Proc.Kill() before Restart.
	Proc   *Process
	launch func(t testing.TB) // starts Proc and waits until it is ready
}

// Stop shuts the server down gracefully (SIGTERM, killed after 30 s); its
// data stays.
func (s *server) Stop() { _ = s.Proc.Stop(30 * time.Second) }

// Restart stops the server if it runs and starts it again with the same
// ports and data, waiting until it is ready. The new process is cleaned up
// with t.
func (s *server) Restart(t testing.TB) {
	t.Helper()
	if !s.Proc.Exited() {
		s.Stop()
	}
	s.launch(t)
}
