package integration

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tributary-io/tributary/internal/testenv"
)

// gateway → Kafka with TLS and SASL SCRAM-SHA-512 → ingester → the real
// Prometheus, every process configured by the -kafka.tls.* and
// -kafka.sasl.* flags; "ingester dlq list" takes the same flags. A gateway
// with a wrong password keeps running, answers writes with 503 and says
// why it is not ready.
func TestKafkaTLSAndSASLEndToEnd(t *testing.T) {
	t.Parallel()
	ca, _, _, cert := testenv.TLSFiles(t)
	const user = "tributary"
	k := testenv.Kafka(t, 2, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", user, "s3cret"))
	dir := t.TempDir()
	secret := func(name, pw string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(pw+"\n"), 0o600))
		return p
	}
	security := func(passwordFile string) []string {
		return []string{"-kafka.tls.enabled", "-kafka.tls.ca-file=" + ca, "-kafka.sasl.mechanism=SCRAM-SHA-512",
			"-kafka.sasl.username=" + user, "-kafka.sasl.password-file=" + passwordFile}
	}
	good := security(secret("good", "s3cret"))

	prom := testenv.Prometheus(t, testenv.SinkConfig)
	gw := startGateway(t, k.Addr, good...)
	startIngester(t, k.Addr, prom.URL, good...)
	l := newLoad("tributary_kafka_security", []string{"secure"}, 5, 10)
	code, msg, err := post(gw.URL, l.request("secure", 0, 10, false))
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, code, msg)
	verify(t, prom, l, map[string]int{"secure": 10})

	out, err := exec.Command(testenv.Binary(t, "ingester"), append([]string{"dlq", "list", "-kafka.brokers=" + k.Addr}, good...)...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "0 dead letters")

	// A wrong password: not a crash, 503 on writes, the reason on /-/ready.
	port := testenv.FreePort(t)
	bad := testenv.StartProcess(t, "gateway-bad-password", testenv.Binary(t, "gateway"), append([]string{
		"-http.listen-addr=" + testenv.Addr(port), "-kafka.brokers=" + k.Addr, "-kafka.ack-timeout=2s", "-kafka.timeout=2s",
		"-otlp.grpc.listen-addr=" + testenv.Addr(testenv.FreePort(t)),
	}, security(secret("bad", "wrong"))...))
	url := "http://" + testenv.Addr(port)
	testenv.WaitHTTP(t, bad, url+"/-/healthy", 30*time.Second)
	for range 2 {
		code, msg, err = post(url, l.request("secure", 0, 1, false))
		require.NoError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, code, msg)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(strings.ToLower(string(body)), "sasl authentication failed") {
			return fmt.Errorf("/-/ready answered %d %q, want 503 naming the SASL failure", resp.StatusCode, body)
		}
		return nil
	})
	require.False(t, bad.Exited(), "the gateway exited: %s", bad.Output())
	require.NotContains(t, bad.Output(), "wrong", "the password was logged")
}
