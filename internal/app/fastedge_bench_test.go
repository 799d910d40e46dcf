package app

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/callback"
	"github.com/wecomhit/wecomhit/internal/callback/callbacktest"
	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/testvectors"
)

// BenchmarkCallbackEdge is one accepted POST through the fasthttp
// listener's handler, as the service runs it (metrics on, an info logger
// with the default line limit), with a sink that returns at once: the
// CPU and the allocations of a callback apart from storing it and from
// fasthttp reading and writing the connection. The request is set up on a
// reused RequestCtx, as fasthttp's connection loop reuses its own.
func BenchmarkCallbackEdge(b *testing.B) {
	c, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	if err != nil {
		b.Fatal(err)
	}
	sink := callback.SinkFunc(func(context.Context, *wecomhit.Callback) error { return nil })
	log := zerolog.New(io.Discard).Level(zerolog.InfoLevel)
	h, err := callback.New([]callback.App{{Name: "archive", Crypter: c}}, sink,
		callback.WithTimestampWindow(0), callback.WithLogger(log),
		callback.WithMetrics(callback.NewMetrics(prometheus.NewRegistry())))
	if err != nil {
		b.Fatal(err)
	}
	serve := newCallbackServer(h, http.NotFoundHandler(), log, time.Minute).Handler
	enc, sig, err := c.Seal(callbacktest.HitKeywordXML, "1717000000", "1372623149")
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(callbacktest.XMLEnvelope(enc))
	uri := "/callback/archive?msg_signature=" + sig + "&timestamp=1717000000&nonce=1372623149"
	var rc fasthttp.RequestCtx
	rc.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	var rd bytes.Reader
	b.ReportAllocs()
	for b.Loop() {
		rc.Request.Reset()
		rc.Response.Reset()
		rc.Request.Header.SetMethod(http.MethodPost)
		rc.Request.SetRequestURI(uri)
		rd.Reset(body)
		rc.Request.SetBodyStream(&rd, len(body))
		serve(&rc)
		if rc.Response.StatusCode() != http.StatusOK {
			b.Fatal(rc.Response.StatusCode(), string(rc.Response.Body()))
		}
	}
}
