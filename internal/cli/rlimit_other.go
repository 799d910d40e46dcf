//go:build !linux && !darwin

package cli

import "github.com/rs/zerolog"

// raiseFileLimit does nothing where RLIMIT_NOFILE does not apply.
func raiseFileLimit(zerolog.Logger, int) {}
