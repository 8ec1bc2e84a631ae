package limits

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

// File is the limits file (-limits.file):
//
//	defaults:            # every cluster, over the gateway's flags
//	  samples_per_second: 50000
//	clusters:
//	  prod-eu:           # this cluster, over defaults
//	    samples_per_second: 200000
//	    max_series_per_request: 10000
type File struct {
	Defaults Cluster            `yaml:"defaults"`
	Clusters map[string]Cluster `yaml:"clusters"`
}

// maxFileBytes bounds what is read of the limits file: thousands of
// clusters fit in a few hundred KiB.
const maxFileBytes = 16 << 20

var errFileTooLarge = fmt.Errorf("limits file larger than %d bytes", maxFileBytes)

// ParseFile reads a limits file. Unknown keys, negative bounds and
// duplicate keys are errors, naming the cluster.
func ParseFile(b []byte) (*File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if err := f.Defaults.Validate(); err != nil {
		return nil, fmt.Errorf("defaults: %w", err)
	}
	for name, c := range f.Clusters {
		if name == "" {
			return nil, errors.New("clusters: empty cluster name")
		}
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("clusters: %s: %w", name, err)
		}
	}
	return &f, nil
}

// LoadFile reads and parses the limits file at path.
func LoadFile(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("%s: %w", path, errFileTooLarge)
	}
	f, err := ParseFile(b)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return f, nil
}
