package callback

// The net/http transport of the Handler: Mount's routes read a Request from
// net/http and write its Answer. The service serves callbacks over fasthttp
// (internal/app); these routes serve the package's own tests and any caller
// that has a chi router.

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"unsafe"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// Mount registers GET and POST /callback/{app} on r.
func (h *Handler) Mount(r chi.Router) {
	r.Get("/callback/{app}", h.verifyURL)
	r.Post("/callback/{app}", h.receive)
}

// httpRequest reads the parts of r every operation needs.
func httpRequest(r *http.Request) Request {
	v := r.URL.Query()
	return Request{
		App:        chi.URLParam(r, "app"),
		Signature:  v.Get("msg_signature"),
		Timestamp:  v.Get("timestamp"),
		Nonce:      v.Get("nonce"),
		Echostr:    v.Get("echostr"),
		RemoteAddr: (*httpPeer)(r),
		RequestID:  middleware.GetReqID(r.Context()),
	}
}

// httpPeer gives a request's RemoteAddr as a fmt.Stringer, without the
// allocation that boxing the string itself would cost.
type httpPeer http.Request

func (p *httpPeer) String() string { return p.RemoteAddr }

func (h *Handler) verifyURL(w http.ResponseWriter, r *http.Request) {
	req := httpRequest(r)
	writeAnswer(w, h.Verify(&req))
}

func (h *Handler) receive(w http.ResponseWriter, r *http.Request) {
	req := httpRequest(r)
	req.ContentLength = r.ContentLength
	req.ReadBody = func() (string, error) { return h.readBody(w, r) }
	writeAnswer(w, h.Receive(r.Context(), &req))
}

// readBody reads at most maxBody bytes. The buffer is sized from
// Content-Length when known and is handed out as a string without a copy:
// nothing writes to it afterwards.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) (string, error) {
	rd := http.MaxBytesReader(w, r.Body, h.maxBody)
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + 1) // +1: ReadFrom wants room to see EOF
	}
	if _, err := buf.ReadFrom(rd); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return "", ErrBodyTooLarge
		}
		return "", err
	}
	b := buf.Bytes()
	return unsafe.String(unsafe.SliceData(b), len(b)), nil
}

// writeAnswer writes a to w. The success answer's header values are shared
// (net/http only reads them): no allocation for them.
func writeAnswer(w http.ResponseWriter, a Answer) {
	hdr := w.Header()
	hdr["Content-Type"] = contentType
	if a.Status != http.StatusOK {
		hdr.Set("X-Content-Type-Options", "nosniff")
	}
	if a.Close {
		hdr.Set("Connection", "close")
	}
	if a.Body == success {
		hdr["Content-Length"] = successLen
	} else {
		hdr.Set("Content-Length", strconv.Itoa(len(a.Body)))
	}
	w.WriteHeader(a.Status)
	_, _ = io.WriteString(w, a.Body)
}

// Shared header values; never modified.
var (
	contentType = []string{ContentType}
	successLen  = []string{strconv.Itoa(len(success))}
)
