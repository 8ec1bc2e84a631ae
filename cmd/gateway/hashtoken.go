package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tributary-io/tributary/pkg/auth"
)

// hashTokenConfig is -auth.hash-token: print the tokens.yaml entry of a
// token read from stdin, so the token itself never lands in a file, a
// command line or a shell history.
type hashTokenConfig struct {
	Enabled bool
	Cluster string
	Tenant  string
}

func (c *hashTokenConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.Enabled, "auth.hash-token", false, "Read a bearer token from stdin, print its tokens.yaml entry (the SHA-256, never the token) for -auth.hash-token.cluster and exit. E.g.: openssl rand -base64 32 | tee token | gateway -auth.hash-token -auth.hash-token.cluster=prod-eu >> tokens.yaml")
	fs.StringVar(&c.Cluster, "auth.hash-token.cluster", "", "Cluster of the token printed by -auth.hash-token.")
	fs.StringVar(&c.Tenant, "auth.hash-token.tenant", "", "Tenant of the token printed by -auth.hash-token (optional).")
}

// minTokenLen: a token is a secret only if it cannot be guessed; 16 bytes
// of base64 from a random source is ~96 bits. `openssl rand -base64 32`
// gives 44.
const minTokenLen = 16

// Run reads one token (its first line) from in and writes its entry to out.
func (c *hashTokenConfig) Run(in io.Reader, out io.Writer) error {
	if c.Cluster == "" {
		return errors.New("-auth.hash-token needs -auth.hash-token.cluster")
	}
	line, err := bufio.NewReader(io.LimitReader(in, 64<<10)).ReadString('\n')
	if err != nil && err != io.EOF {
		return fmt.Errorf("read token from stdin: %w", err)
	}
	token := strings.TrimRight(line, "\r\n")
	if len(token) < minTokenLen {
		return fmt.Errorf("token on stdin is shorter than %d bytes: make one with `openssl rand -base64 32`", minTokenLen)
	}
	if _, err := auth.BearerToken("Bearer " + token); err != nil {
		return fmt.Errorf("token on stdin cannot be sent: %w", err)
	}
	entry := auth.TokenEntry{SHA256: auth.HashToken(token), Cluster: c.Cluster, Tenant: c.Tenant}
	text, err := auth.TokenEntryYAML(entry)
	if err != nil {
		return err
	}
	_, err = io.WriteString(out, text)
	return err
}
