package testenv

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// SharedKube is one kube-apiserver and etcd for all the tests of a package:
// a start costs several seconds of both cores, and the API server holds
// no state a test cannot keep apart. The first test that calls Get starts
// it (with StartKube); TestMain calls Stop after m.Run. Tests sharing it
// stay independent by working in a namespace of their own
// (Kube.CreateNamespace) and by naming their cluster-scoped objects
// (Nodes, ClusterRoles, ...) after it. A test that stops, restarts or
// breaks the apiserver, or that counts cluster-wide objects another test
// could create, keeps its own (StartKube).
type SharedKube struct {
	once sync.Once
	tb   *packageTB
	kube *Kube
}

// Get returns the shared apiserver, starting it on the first call. A start
// that fails fails that test, and every later caller with a pointer to it.
func (s *SharedKube) Get(t testing.TB) *Kube {
	t.Helper()
	s.once.Do(func() {
		s.tb = &packageTB{TB: t}
		s.kube = StartKube(s.tb)
	})
	if s.kube == nil {
		t.Fatal("the shared kube-apiserver failed to start (see the first test that asked for it)")
	}
	return s.kube
}

// Stop kills etcd and kube-apiserver (each by its PID, with its process
// group) and removes their data. With failed (m.Run returned non-zero) it
// first prints the end of their output to stderr: a failing test's own
// output does not include the shared processes'. If the test binary dies
// before Stop (a panic, -timeout), the kernel kills them: StartProcess
// sets Pdeathsig.
func (s *SharedKube) Stop(failed bool) {
	if s.tb == nil {
		return
	}
	s.tb.mu.Lock()
	s.tb.failed = failed
	s.tb.mu.Unlock()
	s.tb.runCleanups()
}

// packageTB is the testing.TB the shared apiserver starts with: it belongs
// to the first test that asked for it while starting (a failure fails that
// test), but its cleanups and temporary directories last until Stop, and
// its logs go to stderr (the first test may have ended).
type packageTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	dirs     []string
	failed   bool
}

func (p *packageTB) Helper() {}

func (p *packageTB) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}

func (p *packageTB) TempDir() string {
	d, err := os.MkdirTemp("", "tributary-shared-kube-")
	if err != nil {
		p.TB.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dirs = append(p.dirs, d)
	return d
}

// Failed is whether the package's run failed, as Stop was told: a test's
// failure is not the shared processes', and the first test may have ended.
func (p *packageTB) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func (p *packageTB) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "shared kube-apiserver: "+format+"\n", args...)
}

func (p *packageTB) runCleanups() {
	p.mu.Lock()
	cleanups, dirs := p.cleanups, p.dirs
	p.cleanups, p.dirs = nil, nil
	p.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	for _, d := range dirs {
		_ = os.RemoveAll(d)
	}
}
