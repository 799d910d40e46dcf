// Package build compiles the programs a benchmark runs as processes. Both
// benchmark commands (bench/run, bench/corps) build from the module they
// are run in, so that a figure always belongs to the checked-out code; it
// leaves starting, measuring and stopping the programs to them.
package build

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ModuleRoot is the directory of the go.mod the go command is working in.
func ModuleRoot(ctx context.Context) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	path := string(bytes.TrimSpace(gomod))
	if err != nil || path == "" || path == os.DevNull {
		return "", fmt.Errorf("not inside the module (go env GOMOD: %v)", err)
	}
	return filepath.Dir(path), nil
}

// Bins builds each package of pkgs (name -> package path, relative to
// root) into work and returns the binaries' paths by name. A name in given
// is not built: its path there is used instead (a build of another
// version, measured with the same harness).
func Bins(ctx context.Context, root, work string, pkgs, given map[string]string) (map[string]string, error) {
	bins := make(map[string]string, len(pkgs))
	for name, pkg := range pkgs {
		if p := given[name]; p != "" {
			bins[name] = p
			continue
		}
		out := filepath.Join(work, name)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		cmd.Dir, cmd.Stderr = root, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("build %s: %w", pkg, err)
		}
		bins[name] = out
	}
	return bins, nil
}
