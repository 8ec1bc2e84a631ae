package testenv

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// FreePort hands out bindable ports below the ephemeral range (where
// outgoing connections take their local ports), never the same one twice.
func TestFreePortOutsideEphemeralRange(t *testing.T) {
	lo, hi := staticPortRange()
	if hi <= lo {
		t.Fatalf("no port range below the ephemeral one: [%d, %d)", lo, hi)
	}
	seen := map[int]bool{}
	for range 200 {
		port := FreePort(t)
		if port < lo || port >= hi {
			t.Fatalf("port %d outside [%d, %d)", port, lo, hi)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
	}
	l, err := net.Listen("tcp", Addr(FreePort(t)))
	if err != nil {
		t.Fatalf("the port handed out is not bindable: %v", err)
	}
	l.Close()
}

// The broker binds port 0 itself, and Port is the port it got.
func TestKafkaReportsItsPort(t *testing.T) {
	k := Kafka(t, 1)
	if k.Port == 0 || k.Addr != Addr(k.Port) {
		t.Fatalf("Addr %s, Port %d", k.Addr, k.Port)
	}
	c, err := net.Dial("tcp", k.Addr)
	if err != nil {
		t.Fatalf("dial the broker: %v", err)
	}
	c.Close()
}

// A server that exits because its port was taken is started again on new
// ports; one that fails for another reason is not.
func TestStartOnFreePortsRetriesATakenPort(t *testing.T) {
	ready := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer ready.Close()
	nothing := "http://" + Addr(FreePort(t)) // nobody listens there
	starts := 0
	startOnFreePorts(t, 30*time.Second, func() (*Process, string) {
		starts++
		if starts == 1 {
			return StartProcess(t, "taken", "sh", []string{"-c", "echo 'listen tcp 127.0.0.1:1: bind: address already in use'; exit 1"}), nothing
		}
		return StartProcess(t, "server", "sleep", []string{"30"}), ready.URL
	})
	if starts != 2 {
		t.Fatalf("started %d times, want 2", starts)
	}
}
