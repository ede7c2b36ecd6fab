package wshub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Cmd is the command code of a frame (SPEC.md section 3).
type Cmd int

// Command codes of the wire protocol. Codes from CmdApp up belong to the
// application and are routed to Options.Dispatcher.
const (
	CmdHeart       Cmd = 0   // client keep-alive; no reply
	CmdPing        Cmd = 1   // application ping, answered with CmdPong
	CmdPong        Cmd = 2   // reply to CmdPing
	CmdSingle      Cmd = 10  // direct message to user DstID
	CmdRoom        Cmd = 11  // message to room DstID
	CmdJoin        Cmd = 12  // join room DstID, optionally replaying after Since
	CmdLeave       Cmd = 13  // leave room DstID
	CmdAck         Cmd = 14  // acknowledge delivered messages ID / IDs
	CmdReceipt     Cmd = 15  // the frame with CID was stored
	CmdHistory     Cmd = 16  // direct-message history with user DstID
	CmdRoomHistory Cmd = 17  // history of room DstID
	CmdWelcome     Cmd = 20  // first frame after connect
	CmdError       Cmd = 40  // error answer; the connection stays open
	CmdApp         Cmd = 100 // first application command code
)

// Frame is one JSON object of the wire protocol (SPEC.md section 2).
//
// Empty fields are left out when a Frame is encoded. UserID and DstID accept a
// JSON number as well as a string when decoded, because the reference
// article's client sends numeric ids.
type Frame struct {
	Cmd    Cmd    `json:"cmd"`
	ID     string `json:"id,omitempty"`
	CID    string `json:"cid,omitempty"`
	UserID string `json:"userid,omitempty"`
	DstID  string `json:"dstid,omitempty"`

	// Application payload, passed through unchanged.
	Media   json.Number `json:"media,omitempty"`
	Content string      `json:"content,omitempty"`
	Pic     string      `json:"pic,omitempty"`
	URL     string      `json:"url,omitempty"`
	Memo    string      `json:"memo,omitempty"`
	Amount  json.Number `json:"amount,omitempty"`
	// Data is a wshub extension: any JSON value an application command
	// wants to carry. It is stored and passed through like the other
	// payload fields.
	Data json.RawMessage `json:"data,omitempty"`

	Seq       uint64   `json:"seq,omitempty"`
	TS        int64    `json:"ts,omitempty"`
	IDs       []string `json:"ids,omitempty"`
	Since     uint64   `json:"since,omitempty"`
	Before    uint64   `json:"before,omitempty"`
	Limit     int      `json:"limit,omitempty"`
	Items     []*Frame `json:"items,omitempty"`
	More      bool     `json:"more,omitempty"`
	Epoch     string   `json:"epoch,omitempty"`
	Recovered *bool    `json:"recovered,omitempty"`
	Code      int      `json:"code,omitempty"`
	Reason    string   `json:"reason,omitempty"`
}

// flexID decodes a JSON string or number into a string.
type flexID string

func (f *flexID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		*f = ""
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexID(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("id must be a string or a number, got %s", b)
	}
	if _, err := strconv.ParseFloat(string(n), 64); err != nil {
		return fmt.Errorf("id must be a string or a number, got %s", b)
	}
	*f = flexID(n)
	return nil
}

// UnmarshalJSON decodes a frame, accepting numbers for userid and dstid.
func (f *Frame) UnmarshalJSON(b []byte) error {
	type plain Frame
	aux := struct {
		*plain
		UserID flexID `json:"userid"`
		DstID  flexID `json:"dstid"`
	}{plain: (*plain)(f)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	f.UserID = string(aux.UserID)
	f.DstID = string(aux.DstID)
	return nil
}

// DecodeFrame decodes one JSON object into a Frame. It fails with an error
// wrapping ErrBadFrame when b is not a JSON object or has no cmd.
func DecodeFrame(b []byte) (*Frame, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", ErrBadFrame)
	}
	f := &Frame{Cmd: -1}
	if err := json.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if f.Cmd < 0 {
		return nil, fmt.Errorf("%w: cmd is missing or negative", ErrBadFrame)
	}
	return f, nil
}

// Encode returns the JSON encoding of f.
func (f *Frame) Encode() ([]byte, error) {
	return json.Marshal(f)
}

// payload holds the application fields of a frame, the part a Store keeps
// opaque in store.Message.Body.
type payload struct {
	Media   json.Number     `json:"media,omitempty"`
	Content string          `json:"content,omitempty"`
	Pic     string          `json:"pic,omitempty"`
	URL     string          `json:"url,omitempty"`
	Memo    string          `json:"memo,omitempty"`
	Amount  json.Number     `json:"amount,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (f *Frame) payload() payload {
	return payload{Media: f.Media, Content: f.Content, Pic: f.Pic, URL: f.URL, Memo: f.Memo, Amount: f.Amount, Data: f.Data}
}

func (f *Frame) setPayload(p payload) {
	f.Media, f.Content, f.Pic, f.URL, f.Memo, f.Amount, f.Data = p.Media, p.Content, p.Pic, p.URL, p.Memo, p.Amount, p.Data
}
