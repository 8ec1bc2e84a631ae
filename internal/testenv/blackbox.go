package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BlackboxBinary finds the Debian prometheus-blackbox-exporter binary,
// installing it with scripts/install-deps.sh when it is missing.
func BlackboxBinary(t testing.TB) string {
	t.Helper()
	const name = "prometheus-blackbox-exporter"
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	installOnce.Do(func() { runInstallDeps(t) })
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found after scripts/install-deps.sh: %v", name, err)
	}
	return p
}

// BlackboxServer is a real Prometheus blackbox exporter started by a test.
type BlackboxServer struct {
	// Addr is its host:port, what a scrape job's __address__ is set to.
	Addr   string
	URL    string
	Config string
	server
}

// Blackbox starts the blackbox exporter with config (its modules file,
// YAML) on a free loopback port and waits until it is ready; it is killed
// when t ends. The config is checked by the exporter itself first
// (--config.check), so a bad module fails with the exporter's own message.
func Blackbox(t testing.TB, config string) *BlackboxServer {
	t.Helper()
	bin := BlackboxBinary(t)
	cfg := filepath.Join(t.TempDir(), "blackbox.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "--config.file="+cfg, "--config.check").CombinedOutput(); err != nil {
		t.Fatalf("blackbox exporter refuses its config: %v\n%s", err, out)
	}
	b := &BlackboxServer{Addr: Addr(FreePort(t)), Config: cfg}
	b.URL = "http://" + b.Addr
	b.launch = func(t testing.TB) {
		b.Proc = StartProcess(t, "blackbox-exporter", bin, []string{
			"--config.file=" + cfg,
			"--web.listen-address=" + b.Addr,
			"--log.level=warn",
		})
		WaitHTTP(t, b.Proc, b.URL+"/-/healthy", 30*time.Second)
	}
	b.launch(t)
	return b
}
