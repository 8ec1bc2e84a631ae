package deploy

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
)

// finalStages are the --target names `make images` builds.
var finalStages = []string{"gateway", "ingester", "agent", "loadgen"}

func parseDockerfile(t *testing.T, path string) []instructions.Stage {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	res, err := parser.Parse(f)
	require.NoError(t, err, "BuildKit's parser refuses %s", path)
	stages, _, err := instructions.Parse(res.AST, nil)
	require.NoError(t, err, "BuildKit's instructions refuse %s", path)
	return stages
}

func stageByName(stages []instructions.Stage, name string) *instructions.Stage {
	for i := range stages {
		if stages[i].Name == name {
			return &stages[i]
		}
	}
	return nil
}

// pinnedImage: a digest, or a tag that starts with a version number
// (golang:1.26.8-bookworm). "latest", no tag, or a moving name such as
// "nonroot" without a digest are not pinned.
var versionTag = regexp.MustCompile(`^v?[0-9]+(\.[0-9]+)+`)

func imagePinned(ref string) bool {
	if strings.Contains(ref, "@sha256:") {
		return true
	}
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return false
	}
	return versionTag.MatchString(ref[i+1:])
}

func TestImagePinned(t *testing.T) {
	for ref, want := range map[string]bool{
		"golang:1.26.8-bookworm":           true,
		"golang":                           false,
		"golang:latest":                    false,
		"gcr.io/distroless/static:nonroot": false,
		"gcr.io/distroless/static:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab": true,
		"localhost:5000/x":   false,
		"apache/kafka:4.1.1": true,
	} {
		require.Equal(t, want, imagePinned(ref), ref)
	}
}

// userOf is the USER a stage runs as: its own last USER, else its base
// stage's.
func userOf(stages []instructions.Stage, s *instructions.Stage) string {
	for s != nil {
		for i := len(s.Commands) - 1; i >= 0; i-- {
			if u, ok := s.Commands[i].(*instructions.UserCommand); ok {
				return u.User
			}
		}
		s = stageByName(stages, s.BaseName)
	}
	return ""
}

func TestDockerfile(t *testing.T) {
	root := testenv.RepoRoot(t)
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))

	t.Run("base images pinned", func(t *testing.T) {
		for _, s := range stages {
			if stageByName(stages, s.BaseName) != nil {
				continue
			}
			require.True(t, imagePinned(s.BaseName), "stage %q: base image %q is not pinned by version or digest", s.Name, s.BaseName)
		}
	})

	t.Run("COPY sources exist", func(t *testing.T) {
		n := 0
		for _, s := range stages {
			for _, c := range s.Commands {
				cp, ok := c.(*instructions.CopyCommand)
				if !ok || cp.From != "" {
					continue
				}
				for _, src := range cp.SourcePaths {
					_, err := os.Stat(filepath.Join(root, src))
					require.NoError(t, err, "stage %q: COPY source %q is not in the repository", s.Name, src)
					n++
				}
			}
		}
		require.NotZero(t, n, "no COPY from the build context")
	})

	t.Run("COPY --from names a stage", func(t *testing.T) {
		for _, s := range stages {
			for _, c := range s.Commands {
				if cp, ok := c.(*instructions.CopyCommand); ok && cp.From != "" {
					require.NotNil(t, stageByName(stages, cp.From), "stage %q copies from unknown stage %q", s.Name, cp.From)
				}
			}
		}
	})

	t.Run("final stages run as non-root", func(t *testing.T) {
		for _, name := range finalStages {
			s := stageByName(stages, name)
			require.NotNil(t, s, "no stage %q for --target %s", name, name)
			u := userOf(stages, s)
			require.NotEmpty(t, u, "stage %q sets no USER", name)
			uid := strings.SplitN(u, ":", 2)[0]
			require.NotContains(t, []string{"0", "root"}, uid, "stage %q runs as root", name)
			require.NotEmpty(t, entrypoint(s), "stage %q has no ENTRYPOINT", name)
		}
	})

	t.Run("build stage copies every package the binaries need", func(t *testing.T) {
		copied := map[string]bool{}
		build := stageByName(stages, "build")
		require.NotNil(t, build)
		for _, c := range build.Commands {
			if cp, ok := c.(*instructions.CopyCommand); ok && cp.From == "" {
				for _, src := range cp.SourcePaths {
					copied[strings.TrimSuffix(src, "/")] = true
				}
			}
		}
		args := append([]string{"list", "-deps"}, buildPackages(t, build)...)
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		require.NoError(t, err)
		const module = "github.com/tributary-io/tributary/"
		for _, pkg := range strings.Fields(string(out)) {
			if rel, ok := strings.CutPrefix(pkg, module); ok {
				top := strings.SplitN(rel, "/", 2)[0]
				require.True(t, copied[top], "package %s is built but %s/ is not copied into the build stage", pkg, top)
			}
		}
	})
}

func entrypoint(s *instructions.Stage) []string {
	for _, c := range s.Commands {
		if e, ok := c.(*instructions.EntrypointCommand); ok {
			return e.CmdLine
		}
	}
	return nil
}

// goBuild is the build stage's `go build` command (its arguments after
// "go") and the ENV before it.
func goBuild(t *testing.T, build *instructions.Stage) (args, env []string) {
	t.Helper()
	for _, c := range build.Commands {
		switch c := c.(type) {
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				env = append(env, kv.Key+"="+kv.Value)
			}
		case *instructions.RunCommand:
			if len(c.CmdLine) > 1 && c.CmdLine[0] == "go" && c.CmdLine[1] == "build" {
				// Exec form only: a shell's quoting is not parsed here.
				require.False(t, c.PrependShell, "write the go build RUN in exec form ([\"go\", \"build\", ...])")
				return c.CmdLine[1:], env
			}
		}
	}
	t.Fatal("the build stage has no RUN go build")
	return nil, nil
}

func buildPackages(t *testing.T, build *instructions.Stage) []string {
	args, _ := goBuild(t, build)
	var pkgs []string
	for _, a := range args {
		if strings.HasPrefix(a, "./cmd/") {
			pkgs = append(pkgs, a)
		}
	}
	require.NotEmpty(t, pkgs)
	return pkgs
}

// TestDockerfileBuildsStaticBinaries runs the build stage's own go build
// command and environment (with CGO_ENABLED as the Dockerfile sets it, not
// as this machine has it) for each final stage's binary, and checks with
// debug/elf that the binary needs no dynamic loader: the distroless static
// image has no libc.
func TestDockerfileBuildsStaticBinaries(t *testing.T) {
	root := testenv.RepoRoot(t)
	build := stageByName(parseDockerfile(t, filepath.Join(root, "Dockerfile")), "build")
	require.NotNil(t, build, "no stage named build")
	args, env := goBuild(t, build)
	require.Contains(t, args, "-trimpath")
	for _, pkg := range buildPackages(t, build) {
		name := filepath.Base(pkg)
		require.True(t, slices.Contains(finalStages, name), "binary %s has no final stage", name)
		// One binary: all share the flags and environment, and each
		// -trimpath build of a binary costs minutes of a cold cache.
		if name != "agent" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			out := t.TempDir()
			var cmdArgs []string
			for i := 0; i < len(args); i++ {
				switch {
				case args[i] == "-o":
					i++ // the Dockerfile's output directory; ours is a temp one
					cmdArgs = append(cmdArgs, "-o", out+"/")
				case strings.HasPrefix(args[i], "./cmd/"):
				default:
					cmdArgs = append(cmdArgs, args[i])
				}
			}
			cmdArgs = append(cmdArgs, pkg)
			cmd := exec.Command("go", cmdArgs...)
			cmd.Dir = root
			// The machine's environment with CGO_ENABLED unset (cgo is on
			// where a C compiler exists), then the Dockerfile's ENV.
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "CGO_ENABLED=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(cmd.Env, env...)
			b, err := cmd.CombinedOutput()
			require.NoError(t, err, "go %s: %s", strings.Join(cmdArgs, " "), b)
			f, err := elf.Open(filepath.Join(out, name))
			require.NoError(t, err)
			defer f.Close()
			for _, p := range f.Progs {
				require.NotEqual(t, elf.PT_INTERP, p.Type, "%s asks for a dynamic loader", name)
				require.NotEqual(t, elf.PT_DYNAMIC, p.Type, "%s has a dynamic section", name)
			}
			require.Nil(t, f.Section(".interp"), "%s has .interp", name)
		})
	}
}
