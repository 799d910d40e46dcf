package wecom

import (
	"encoding/json"
	"fmt"
)

// transport turns an operation's JSON request into an HTTP call and the
// answer back into the operation's JSON response. The two WeCom product
// generations differ only here.
type transport interface {
	// encode returns the path (no query) and body for op with req.
	encode(op, notifyID string, req []byte) (path string, body []byte, err error)
	// decode returns op's response JSON from an answer whose errcode is
	// unchecked; the caller checks the errcode of what decode returns
	// (decodeAnswer). A wrapper's own errcode is decode's to check.
	decode(op string, body []byte) ([]byte, error)
}

// httpsTransport calls the 会话存档接口授权 HTTPS APIs directly.
type httpsTransport struct{}

func (httpsTransport) encode(op, _ string, req []byte) (string, []byte, error) {
	if op == opSearchMsg {
		return "/cgi-bin/chatdata/search_msg", req, nil
	}
	return "/cgi-bin/chatdata/keyword/" + op, req, nil
}

func (httpsTransport) decode(_ string, body []byte) ([]byte, error) { return body, nil }

// zoneTransport calls an ability of the app's zone program through
// sync_call_program: request_data and response_data are JSON documents
// carried as JSON strings, optionally wrapped as {"input":…}/{"output":…}.
type zoneTransport struct {
	programID string
	abilities map[string]string
	wrap      bool
}

const syncCallProgramPath = "/cgi-bin/chatdata/sync_call_program"

type syncCallRequest struct {
	ProgramID   string `json:"program_id"`
	AbilityID   string `json:"ability_id"`
	NotifyID    string `json:"notify_id,omitempty"`
	RequestData string `json:"request_data"`
}

type syncCallResponse struct {
	envelope
	ResponseData *string `json:"response_data"`
}

func (z zoneTransport) encode(op, notifyID string, req []byte) (string, []byte, error) {
	ability := z.abilities[op]
	if ability == "" {
		return "", nil, fmt.Errorf("%w: %s", ErrNoAbility, op)
	}
	data := req
	if z.wrap {
		var err error
		if data, err = json.Marshal(struct {
			Input json.RawMessage `json:"input"`
		}{req}); err != nil {
			return "", nil, fmt.Errorf("wecom %s: encode request: %w", op, err)
		}
	}
	body, err := json.Marshal(syncCallRequest{
		ProgramID: z.programID, AbilityID: ability, NotifyID: notifyID, RequestData: string(data),
	})
	if err != nil {
		return "", nil, fmt.Errorf("wecom %s: encode request: %w", op, err)
	}
	return syncCallProgramPath, body, nil
}

// decode checks sync_call_program's own errcode and unpacks
// response_data. The program's answer may carry its own errcode (from the
// SDK call it made), which the caller checks; a non-zero one is an
// *APIError named after op.
func (z zoneTransport) decode(op string, body []byte) ([]byte, error) {
	var r syncCallResponse
	if err := json.Unmarshal(body, &r); err != nil {
		// An error answer in an unexpected shape still reports its errcode.
		if eerr := checkEnvelope(op, body); eerr != nil {
			return nil, eerr
		}
		return nil, fmt.Errorf("wecom %s: decode sync_call_program response: %w", op, err)
	}
	if err := r.err(op); err != nil {
		return nil, err
	}
	if r.ResponseData == nil {
		return nil, fmt.Errorf("wecom %s: sync_call_program response has no response_data", op)
	}
	data := []byte(*r.ResponseData)
	if z.wrap {
		var w struct {
			Output json.RawMessage `json:"output"`
		}
		if err := json.Unmarshal(data, &w); err != nil {
			return nil, fmt.Errorf("wecom %s: decode response_data: %w", op, err)
		}
		if len(w.Output) == 0 {
			return nil, fmt.Errorf("wecom %s: response_data has no output", op)
		}
		data = w.Output
	}
	return data, nil
}
