package wshub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Cmd is the command code of a frame (docs/protocol.md, "Frames").
type Cmd int

// Command codes of the wire protocol. Codes from CmdApp up belong to the
// application and are routed to Options.Dispatcher.
const (
	CmdHeart         Cmd = 0   // client keep-alive; no reply
	CmdPing          Cmd = 1   // application ping, answered with CmdPong
	CmdPong          Cmd = 2   // reply to CmdPing
	CmdSingle        Cmd = 10  // direct message to user DstID
	CmdRoom          Cmd = 11  // message to room DstID
	CmdJoin          Cmd = 12  // join room DstID, optionally replaying after Since
	CmdLeave         Cmd = 13  // leave room DstID
	CmdAck           Cmd = 14  // acknowledge delivered messages ID / IDs
	CmdReceipt       Cmd = 15  // the frame with CID was stored
	CmdHistory       Cmd = 16  // direct-message history with user DstID
	CmdRoomHistory   Cmd = 17  // history of room DstID
	CmdConversations Cmd = 18  // the user's conversations, most recent first
	CmdRead          Cmd = 19  // the user read conversation DstID up to Seq
	CmdWelcome       Cmd = 20  // first frame after connect
	CmdPresence      Cmd = 21  // watch users' presence, or list a room's members with theirs
	CmdTyping        Cmd = 22  // the user is typing to user or room DstID; ephemeral
	CmdError         Cmd = 40  // error answer; the connection stays open
	CmdApp           Cmd = 100 // first application command code
)

// Frame is one JSON object of the wire protocol (docs/protocol.md).
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
	// Room says that DstID names a room rather than a user (cmd 19, 22).
	Room bool `json:"room,omitempty"`

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

	// Read, Seen and Unread describe one conversation in a cmd 18 reply:
	// the user's read marker, the peer's read marker (direct
	// conversations only) and Seq - Read.
	Read   uint64 `json:"read,omitempty"`
	Seen   uint64 `json:"seen,omitempty"`
	Unread uint64 `json:"unread,omitempty"`

	// Online says whether UserID has a connection on some hub process
	// (cmd 21). It is always set in the cmd 21 frames the hub sends.
	Online *bool `json:"online,omitempty"`
}

// flexID decodes a JSON string or number into a string.
type flexID string

func (f *flexID) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) == 0:
		return errors.New("empty id")
	case b[0] == '"':
		if bytes.IndexByte(b[1:len(b)-1], '\\') < 0 {
			*f = flexID(b[1 : len(b)-1]) // no escapes: the text is the id
			return nil
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexID(s)
	case string(b) == "null":
		*f = ""
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		*f = flexID(b) // the decoder has checked the number's syntax
	default:
		return fmt.Errorf("id must be a string or a number, got %s", b)
	}
	return nil
}

// wireFrame is Frame as decoded from the wire: the same fields, with ids
// that accept numbers. Decoding into it takes one pass.
type wireFrame struct {
	Cmd       Cmd             `json:"cmd"`
	ID        string          `json:"id"`
	CID       string          `json:"cid"`
	UserID    flexID          `json:"userid"`
	DstID     flexID          `json:"dstid"`
	Room      bool            `json:"room"`
	Media     json.Number     `json:"media"`
	Content   string          `json:"content"`
	Pic       string          `json:"pic"`
	URL       string          `json:"url"`
	Memo      string          `json:"memo"`
	Amount    json.Number     `json:"amount"`
	Data      json.RawMessage `json:"data"`
	Seq       uint64          `json:"seq"`
	TS        int64           `json:"ts"`
	IDs       []string        `json:"ids"`
	Since     uint64          `json:"since"`
	Before    uint64          `json:"before"`
	Limit     int             `json:"limit"`
	Items     []*Frame        `json:"items"`
	More      bool            `json:"more"`
	Epoch     string          `json:"epoch"`
	Recovered *bool           `json:"recovered"`
	Code      int             `json:"code"`
	Reason    string          `json:"reason"`
	Read      uint64          `json:"read"`
	Seen      uint64          `json:"seen"`
	Unread    uint64          `json:"unread"`
	Online    *bool           `json:"online"`
}

// UnmarshalJSON decodes a frame, accepting numbers for userid and dstid.
func (f *Frame) UnmarshalJSON(b []byte) error {
	w := wireFrame{Cmd: f.Cmd}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*f = Frame{
		Cmd: w.Cmd, ID: w.ID, CID: w.CID, UserID: string(w.UserID), DstID: string(w.DstID), Room: w.Room,
		Media: w.Media, Content: w.Content, Pic: w.Pic, URL: w.URL, Memo: w.Memo, Amount: w.Amount, Data: w.Data,
		Seq: w.Seq, TS: w.TS, IDs: w.IDs, Since: w.Since, Before: w.Before, Limit: w.Limit, Items: w.Items,
		More: w.More, Epoch: w.Epoch, Recovered: w.Recovered, Code: w.Code, Reason: w.Reason,
		Read: w.Read, Seen: w.Seen, Unread: w.Unread, Online: w.Online,
	}
	return nil
}

// DecodeFrame decodes one JSON object into a Frame. It fails with an error
// wrapping ErrBadFrame when b is not a JSON object or has no cmd.
func DecodeFrame(b []byte) (*Frame, error) {
	f := new(Frame)
	if err := decodeFrameInto(b, f); err != nil {
		return nil, err
	}
	return f, nil
}

// decodeFrameInto is DecodeFrame into f, which must be zero (a new Frame,
// or one cleared when it went back to its pool: clearing it twice per
// message would be work done twice).
func decodeFrameInto(b []byte, f *Frame) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return fmt.Errorf("%w: not a JSON object", ErrBadFrame)
	}
	f.Cmd = -1
	if !decodeFast(b, f) {
		*f = Frame{Cmd: -1}
		if err := json.Unmarshal(b, f); err != nil {
			return fmt.Errorf("%w: %v", ErrBadFrame, err)
		}
	}
	if f.Cmd < 0 {
		return fmt.Errorf("%w: cmd is missing or negative", ErrBadFrame)
	}
	return nil
}

// Encode returns the JSON encoding of f: the fields that are not empty,
// in the order of the Frame type. It fails when Media or Amount is not a
// JSON number or Data is not valid JSON.
func (f *Frame) Encode() ([]byte, error) {
	return f.AppendJSON(make([]byte, 0, f.sizeHint()))
}

// sizeHint is about the length of f's encoding: its text fields and room
// for the names and numbers, so that Encode allocates once (escaped
// characters and Items grow it).
func (f *Frame) sizeHint() int {
	return 112 + len(f.ID) + len(f.CID) + len(f.UserID) + len(f.DstID) +
		len(f.Media) + len(f.Content) + len(f.Pic) + len(f.URL) + len(f.Memo) +
		len(f.Amount) + len(f.Data) + len(f.Epoch) + len(f.Reason)
}

// MarshalJSON encodes f as Encode does.
func (f *Frame) MarshalJSON() ([]byte, error) { return f.Encode() }

// AppendJSON appends the JSON encoding of f to b (see Encode).
func (f *Frame) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"cmd":`...)
	b = strconv.AppendInt(b, int64(f.Cmd), 10)
	b = appendStrField(b, `,"id":`, f.ID)
	b = appendStrField(b, `,"cid":`, f.CID)
	b = appendStrField(b, `,"userid":`, f.UserID)
	b = appendStrField(b, `,"dstid":`, f.DstID)
	if f.Room {
		b = append(b, `,"room":true`...)
	}
	b, err := f.appendPayloadFields(b)
	if err != nil {
		return nil, err
	}
	b = appendUintField(b, `,"seq":`, f.Seq)
	if f.TS != 0 {
		b = append(b, `,"ts":`...)
		b = strconv.AppendInt(b, f.TS, 10)
	}
	if len(f.IDs) > 0 {
		b = append(b, `,"ids":[`...)
		for i, id := range f.IDs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, id)
		}
		b = append(b, ']')
	}
	b = appendUintField(b, `,"since":`, f.Since)
	b = appendUintField(b, `,"before":`, f.Before)
	if f.Limit != 0 {
		b = append(b, `,"limit":`...)
		b = strconv.AppendInt(b, int64(f.Limit), 10)
	}
	if len(f.Items) > 0 {
		b = append(b, `,"items":[`...)
		for i, it := range f.Items {
			if i > 0 {
				b = append(b, ',')
			}
			if it == nil {
				b = append(b, "null"...)
				continue
			}
			if b, err = it.AppendJSON(b); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	if f.More {
		b = append(b, `,"more":true`...)
	}
	b = appendStrField(b, `,"epoch":`, f.Epoch)
	if f.Recovered != nil {
		b = append(b, `,"recovered":`...)
		b = strconv.AppendBool(b, *f.Recovered)
	}
	if f.Code != 0 {
		b = append(b, `,"code":`...)
		b = strconv.AppendInt(b, int64(f.Code), 10)
	}
	b = appendStrField(b, `,"reason":`, f.Reason)
	b = appendUintField(b, `,"read":`, f.Read)
	b = appendUintField(b, `,"seen":`, f.Seen)
	b = appendUintField(b, `,"unread":`, f.Unread)
	if f.Online != nil {
		b = append(b, `,"online":`...)
		b = strconv.AppendBool(b, *f.Online)
	}
	return append(b, '}'), nil
}

func appendStrField(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendString(append(b, key...), v)
}

func appendUintField(b []byte, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendUint(append(b, key...), v, 10)
}

func appendNumField(b []byte, key string, n json.Number) ([]byte, error) {
	if n == "" {
		return b, nil
	}
	if !isNumber(string(n)) {
		return nil, fmt.Errorf("wshub: %q is not a JSON number", string(n))
	}
	return append(append(b, key...), n...), nil
}

// isNumber reports whether s is a JSON number.
func isNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - j
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, and U+2028 and
// U+2029 escaped for JavaScript, as encoding/json does.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
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

// appendPayload appends the JSON object of f's application fields (the
// payload type's encoding: the same fields, empty ones left out) to b,
// without reflection: it is on the path of every stored message. It
// fails as Encode does on a Media or Amount that is not a JSON number or
// Data that is not valid JSON.
func (f *Frame) appendPayload(b []byte) ([]byte, error) {
	start := len(b)
	b, err := f.appendPayloadFields(append(b, '{'))
	if err != nil {
		return nil, err
	}
	if len(b) > start+1 {
		b = append(b[:start+1], b[start+2:]...) // the first field's leading comma
	}
	return append(b, '}'), nil
}

// appendPayloadFields appends f's application fields, each with its
// leading comma, empty ones left out (see Encode for the errors).
func (f *Frame) appendPayloadFields(b []byte) ([]byte, error) {
	var err error
	if b, err = appendNumField(b, `,"media":`, f.Media); err != nil {
		return nil, err
	}
	b = appendStrField(b, `,"content":`, f.Content)
	b = appendStrField(b, `,"pic":`, f.Pic)
	b = appendStrField(b, `,"url":`, f.URL)
	b = appendStrField(b, `,"memo":`, f.Memo)
	if b, err = appendNumField(b, `,"amount":`, f.Amount); err != nil {
		return nil, err
	}
	if len(f.Data) > 0 {
		if !json.Valid(f.Data) {
			return nil, fmt.Errorf("wshub: frame data is not valid JSON")
		}
		b = append(b, `,"data":`...)
		b = append(b, f.Data...)
	}
	return b, nil
}

func (f *Frame) payload() payload {
	return payload{Media: f.Media, Content: f.Content, Pic: f.Pic, URL: f.URL, Memo: f.Memo, Amount: f.Amount, Data: f.Data}
}

func (f *Frame) setPayload(p payload) {
	f.Media, f.Content, f.Pic, f.URL, f.Memo, f.Amount, f.Data = p.Media, p.Content, p.Pic, p.URL, p.Memo, p.Amount, p.Data
}
