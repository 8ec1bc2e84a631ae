package server

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// version is set at build time:
// go build -ldflags "-X github.com/tributary-io/tributary/pkg/server.version=v1.2.3".
var version string

// Version describes the build: the version set by ldflags or the module
// version, the VCS revision Go recorded, and the Go version.
func Version() string {
	v := version
	var details []string
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = ", modified"
				}
			}
		}
		if rev != "" {
			details = append(details, "revision "+rev+modified)
		}
	}
	if v == "" {
		v = "(devel)"
	}
	details = append(details, runtime.Version())
	return v + " (" + strings.Join(details, ", ") + ")"
}
