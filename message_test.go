package wshub_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
)

func TestDecodeFrame(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  wshub.Frame
		error bool
	}{
		{"string ids", `{"cmd":10,"userid":"a","dstid":"b"}`, wshub.Frame{Cmd: 10, UserID: "a", DstID: "b"}, false},
		{"numeric ids", `{"cmd":10,"userid":7,"dstid":42}`, wshub.Frame{Cmd: 10, UserID: "7", DstID: "42"}, false},
		{"big and fractional numbers keep their text", `{"cmd":10,"dstid":12345678901234567890,"amount":1.50}`, wshub.Frame{Cmd: 10, DstID: "12345678901234567890", Amount: "1.50"}, false},
		{"null ids", `{"cmd":1,"dstid":null}`, wshub.Frame{Cmd: 1}, false},
		{"unknown fields ignored", `{"cmd":0,"whatever":[1,2]}`, wshub.Frame{Cmd: 0}, false},
		{"cmd 0 is a command", `{"cmd":0}`, wshub.Frame{Cmd: 0}, false},
		{"payload kept", `{"cmd":11,"media":3,"content":"c","pic":"p","url":"u","memo":"m","data":{"k":[1]}}`,
			wshub.Frame{Cmd: 11, Media: "3", Content: "c", Pic: "p", URL: "u", Memo: "m", Data: json.RawMessage(`{"k":[1]}`)}, false},
		{"no cmd", `{"dstid":"b"}`, wshub.Frame{}, true},
		{"negative cmd", `{"cmd":-1}`, wshub.Frame{}, true},
		{"array", `[{"cmd":1}]`, wshub.Frame{}, true},
		{"empty", ``, wshub.Frame{}, true},
		{"truncated", `{"cmd":1`, wshub.Frame{}, true},
		{"object id", `{"cmd":10,"dstid":{}}`, wshub.Frame{}, true},
		{"bool id", `{"cmd":10,"dstid":true}`, wshub.Frame{}, true},
		{"string cmd", `{"cmd":"10"}`, wshub.Frame{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := wshub.DecodeFrame([]byte(tt.in))
			if tt.error {
				require.Error(t, err)
				assert.ErrorIs(t, err, wshub.ErrBadFrame)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, *f)
		})
	}
}

func TestFrameEncodeLeavesEmptyFieldsOut(t *testing.T) {
	yes := false
	b, err := (&wshub.Frame{Cmd: wshub.CmdJoin, DstID: "r", Recovered: &yes}).Encode()
	require.NoError(t, err)
	assert.JSONEq(t, `{"cmd":12,"dstid":"r","recovered":false}`, string(b))
	b, err = (&wshub.Frame{Cmd: wshub.CmdHeart}).Encode()
	require.NoError(t, err)
	assert.Equal(t, `{"cmd":0}`, string(b))
}

func TestErrorsCompareWithIs(t *testing.T) {
	wrapped := errors.Join(errors.New("context"), wshub.ErrNotMember)
	assert.ErrorIs(t, wrapped, wshub.ErrNotMember)
	var e *wshub.Error
	require.ErrorAs(t, wrapped, &e)
	assert.Equal(t, 403, e.Code)
}

func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{`{"cmd":10,"dstid":42,"content":"x"}`, `{"cmd":1}`, `{"cmd":16,"since":3,"limit":-1}`, `{`, `[]`, `{"cmd":1e400}`, `{"dstid":1e999,"cmd":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := wshub.DecodeFrame(data)
		if err != nil {
			if !errors.Is(err, wshub.ErrBadFrame) {
				t.Fatalf("error %v is not ErrBadFrame", err)
			}
			return
		}
		if fr.Cmd < 0 {
			t.Fatalf("negative cmd accepted")
		}
		out, err := fr.Encode()
		if err != nil {
			t.Fatalf("decoded frame does not encode: %v", err)
		}
		again, err := wshub.DecodeFrame(out)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", out, err)
		}
		if again.Cmd != fr.Cmd || again.DstID != fr.DstID || again.Content != fr.Content {
			t.Fatalf("round trip changed the frame: %+v vs %+v", fr, again)
		}
	})
}

// plainFrame has Frame's fields and tags but not its methods, so that
// encoding/json encodes it by reflection: the reference for Encode.
type plainFrame wshub.Frame

func encodingJSON(t *testing.T, f *wshub.Frame) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	require.NoError(t, enc.Encode((*plainFrame)(f)))
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func FuzzFrameEncodeMatchesEncodingJSON(f *testing.F) {
	f.Add(10, "id", "c\"1", "user\n", "dst\\", "content <&> \u2028 \x00 \xff é", "1.5e3", uint64(7), int64(-3), "ep", true, 40, "reason\t")
	f.Add(0, "", "", "", "", "", "", uint64(0), int64(0), "", false, 0, "")
	f.Fuzz(func(t *testing.T, cmd int, id, cid, user, dst, content, amount string, seq uint64, ts int64, epoch string, more bool, code int, reason string) {
		rec := more
		fr := &wshub.Frame{Cmd: wshub.Cmd(cmd), ID: id, CID: cid, UserID: user, DstID: dst, Content: content, Pic: content, Amount: json.Number(amount),
			Seq: seq, TS: ts, IDs: []string{id, content}, Since: seq, Limit: code, More: more, Epoch: epoch, Recovered: &rec, Code: code, Reason: reason,
			Read: seq / 2, Seen: uint64(ts), Unread: seq - seq/2, Online: &rec,
			Items: []*wshub.Frame{{Cmd: 11, Content: content, Seq: seq, Read: seq, Unread: uint64(code)}}}
		got, err := fr.Encode()
		if !json.Valid([]byte(amount)) || strings.TrimSpace(amount) != amount || (amount != "" && !strings.ContainsAny(amount[:1], "-0123456789")) {
			// Not a JSON number: both refuse, or only encoding/json is lax about it.
			if err == nil && amount != "" {
				var n json.Number
				require.NoError(t, json.Unmarshal([]byte(amount), &n), "Encode accepted amount %q", amount)
			}
			return
		}
		require.NoError(t, err)
		require.Equal(t, string(encodingJSON(t, fr)), string(got))
	})
}

func TestError_IsComparesCodeAndReason(t *testing.T) {
	copied := &wshub.Error{Code: wshub.ErrNotMember.Code, Reason: wshub.ErrNotMember.Reason}
	assert.ErrorIs(t, fmt.Errorf("join: %w", copied), wshub.ErrNotMember)
	assert.NotErrorIs(t, copied, wshub.ErrForbidden, "same code, other reason")
	assert.NotErrorIs(t, wshub.ErrBadFrame, wshub.ErrMissingDst)
}
