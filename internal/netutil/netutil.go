// Package netutil holds the one answer to "is this host loopback?", which
// decides where the receiver may send secrets in plain text (the WeCom
// client), whom an embedded NATS server may serve without credentials
// (broker), and where the load generator may aim (loadgen).
//
// It resolves no names: a host name other than localhost is not loopback,
// whatever it resolves to.
package netutil

import (
	"net"
	"strings"
)

// IsLoopback reports whether host (a host name or IP address, without port
// or brackets) is localhost or a loopback address. An empty host, which a
// listener reads as every interface, is not.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
