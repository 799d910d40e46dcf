//go:build linux || darwin

package cli

import (
	"syscall"

	"github.com/rs/zerolog"
)

// fileLimitReserve is the descriptors kept for everything but the HTTP
// listeners' connections: JetStream's files, NATS clients, logs.
const fileLimitReserve = 1024

// raiseFileLimit raises the soft limit on open files to the hard limit and
// logs both, next to the connection caps they must hold: every connection,
// and every JetStream file, is a descriptor, and at the limit JetStream
// fails writes. Since Go 1.19 the runtime raises the soft limit itself at
// start; doing it here too keeps the guarantee explicit and puts the
// numbers in the log. A failure is logged, never fatal.
func raiseFileLimit(log zerolog.Logger, conns int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn().Err(err).Msg("reading the open-file limit failed")
		return
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = raised.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			log.Warn().Err(err).Uint64("soft", lim.Cur).Uint64("hard", lim.Max).Msg("raising the open-file limit failed")
		} else {
			lim = raised
		}
	}
	if lim.Cur < uint64(conns)+fileLimitReserve {
		log.Warn().Uint64("soft", lim.Cur).Uint64("hard", lim.Max).Int("max_connections", conns).
			Msg("open-file limit leaves too few descriptors for NATS beside the connection caps; lower http.max_connections or raise the hard limit")
		return
	}
	log.Info().Uint64("soft", lim.Cur).Uint64("hard", lim.Max).Int("max_connections", conns).Msg("open-file limit")
}
