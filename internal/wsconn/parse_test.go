package wsconn

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
	"unicode/utf8"
)

// testKey is the masking key of the frames the tests build.
var testKey = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// clientFrame returns a client frame (masked with testKey, RSV bits clear)
// with the shortest length encoding.
func clientFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op & 0x0f
	if fin {
		b0 |= 0x80
	}
	return rawFrame(b0, true, uint64(len(payload)), payload)
}

// rawFrame returns a frame with first byte b0, the length n (shortest
// encoding) and, when masked, payload masked with testKey; payload may be
// shorter than n (a frame cut short).
func rawFrame(b0 byte, masked bool, n uint64, payload []byte) []byte {
	b := []byte{b0, 0}
	switch {
	case n < 126:
		b[1] = byte(n)
	case n <= 0xffff:
		b[1] = 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b[1] = 127
		b = binary.BigEndian.AppendUint64(b, n)
	}
	p := bytes.Clone(payload)
	if masked {
		b[1] |= 0x80
		b = append(b, testKey[:]...)
		for i := range p {
			p[i] ^= testKey[i&3]
		}
	}
	return append(b, p...)
}

// closePayload is the payload of a close frame with code and reason.
func closePayload(code int, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// cat concatenates frames into one stream.
func cat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

// recorder is a sink that writes down what the parser reports.
type recorder struct {
	msgs  []string
	pings []string
	close []string // "code reason"
}

func (r *recorder) message(p []byte) { r.msgs = append(r.msgs, string(p)) }
func (r *recorder) ping(p []byte)    { r.pings = append(r.pings, string(p)) }
func (r *recorder) closeFrame(code int, reason string) {
	r.close = append(r.close, fmt.Sprintf("%d %s", code, reason))
}

func TestParser_Cases(t *testing.T) {
	const limit = 64
	big := bytes.Repeat([]byte("x"), limit)
	cases := []struct {
		name  string
		in    []byte
		msgs  []string
		pings []string
		close []string // close frames reported, "code reason"
		fail  int      // the failure's close code, 0 for none
		// failAt, when not 0, is how many bytes were fed, one at a time,
		// when the failure was returned.
		failAt int
	}{
		{
			name: "one text frame",
			in:   clientFrame(true, opText, []byte("hello")),
			msgs: []string{"hello"},
		},
		{
			name: "empty text frame",
			in:   clientFrame(true, opText, nil),
			msgs: []string{""},
		},
		{
			name: "two messages",
			in:   cat(clientFrame(true, opText, []byte("a")), clientFrame(true, opText, []byte("héllo"))),
			msgs: []string{"a", "héllo"},
		},
		{
			name: "fragmented with a ping between the fragments",
			in: cat(
				clientFrame(false, opText, []byte("hel")),
				clientFrame(true, opPing, []byte("p1")),
				clientFrame(false, opContinuation, nil),
				clientFrame(true, opContinuation, []byte("lo")),
			),
			msgs:  []string{"hello"},
			pings: []string{"p1"},
		},
		{
			name:  "pong is ignored",
			in:    cat(clientFrame(true, opPong, []byte("x")), clientFrame(true, opText, []byte("m"))),
			msgs:  []string{"m"},
			pings: nil,
		},
		{
			name: "a message of exactly the limit",
			in:   clientFrame(true, opText, big),
			msgs: []string{string(big)},
		},
		{
			name: "UTF-8 sequence split across fragments",
			in: cat(
				clientFrame(false, opText, []byte("a\xe2\x82")),
				clientFrame(true, opContinuation, []byte("\xac")),
			),
			msgs: []string{"a€"},
		},
		{
			name:  "close with code and reason",
			in:    clientFrame(true, opClose, closePayload(CloseGoingAway, "bye")),
			close: []string{"1001 bye"},
		},
		{
			name:  "close without payload",
			in:    clientFrame(true, opClose, nil),
			close: []string{"1005 "},
		},
		{
			name:  "close with an application code",
			in:    clientFrame(true, opClose, closePayload(4000, "")),
			close: []string{"4000 "},
		},
		{
			name: "close with a 1-byte payload",
			in:   clientFrame(true, opClose, []byte{3}),
			fail: CloseProtocolError,
		},
		{
			name: "close code 1005 may not be sent",
			in:   clientFrame(true, opClose, closePayload(closeNoStatus, "")),
			fail: CloseProtocolError,
		},
		{
			name: "close code 999",
			in:   clientFrame(true, opClose, closePayload(999, "")),
			fail: CloseProtocolError,
		},
		{
			name: "close code 1004 is reserved",
			in:   clientFrame(true, opClose, closePayload(1004, "")),
			fail: CloseProtocolError,
		},
		{
			name: "close code 5000",
			in:   clientFrame(true, opClose, closePayload(5000, "")),
			fail: CloseProtocolError,
		},
		{
			name: "close reason not UTF-8",
			in:   clientFrame(true, opClose, closePayload(CloseNormal, "\xff")),
			fail: CloseInvalidData,
		},
		{
			name:   "unmasked frame",
			in:     rawFrame(0x80|opText, false, 2, []byte("hi")),
			fail:   CloseProtocolError,
			failAt: 2,
		},
		{
			name:   "reserved bit",
			in:     rawFrame(0x80|0x40|opText, true, 2, []byte("hi")),
			fail:   CloseProtocolError,
			failAt: 6,
		},
		{
			name: "unknown data opcode",
			in:   clientFrame(true, 0x3, []byte("hi")),
			fail: CloseProtocolError,
		},
		{
			name: "unknown control opcode",
			in:   clientFrame(true, 0xB, nil),
			fail: CloseProtocolError,
		},
		{
			name: "fragmented ping",
			in:   clientFrame(false, opPing, []byte("p")),
			fail: CloseProtocolError,
		},
		{
			name: "ping longer than 125 bytes",
			in:   clientFrame(true, opPing, bytes.Repeat([]byte("p"), 126)),
			fail: CloseProtocolError,
		},
		{
			name: "continuation without a message",
			in:   clientFrame(true, opContinuation, []byte("x")),
			fail: CloseProtocolError,
		},
		{
			name: "new message inside a fragmented one",
			in:   cat(clientFrame(false, opText, []byte("a")), clientFrame(true, opText, []byte("b"))),
			fail: CloseProtocolError,
		},
		{
			name: "64-bit length with the top bit set",
			in: cat(
				clientFrame(true, opText, []byte("before")),
				[]byte{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 5},
				testKey[:],
				[]byte("after"),
			),
			msgs:   []string{"before"},
			fail:   CloseProtocolError,
			failAt: 12 + 10,
		},
		{
			name: "binary frame",
			in:   clientFrame(true, opBinary, []byte{1, 2, 3}),
			fail: CloseUnsupported,
		},
		{
			name:   "over the limit",
			in:     clientFrame(true, opText, append(big, 'y')),
			fail:   CloseTooBig,
			failAt: 2 + 4, // the header is enough
		},
		{
			name: "over the limit in the second fragment",
			in: cat(
				clientFrame(false, opText, big[:limit/2]),
				clientFrame(true, opContinuation, big[:limit/2+1]),
			),
			fail: CloseTooBig,
		},
		{
			name:   "fail fast: 3rd payload byte not UTF-8",
			in:     clientFrame(true, opText, []byte("ab\xffcdefghij")),
			fail:   CloseInvalidData,
			failAt: 6 + 3, // header and 3 payload bytes, not the other 8
		},
		{
			name: "invalid UTF-8 across fragments, after a ping",
			in: cat(
				clientFrame(false, opText, []byte("a\xe2\x82")),
				clientFrame(true, opPing, []byte("p")),
				clientFrame(true, opContinuation, []byte("b")),
			),
			pings:  []string{"p"},
			fail:   CloseInvalidData,
			failAt: 9 + 7 + 7, // at the first byte of the 2nd fragment
		},
		{
			name: "message ends inside a UTF-8 sequence",
			in: cat(
				clientFrame(false, opText, []byte("a\xe2\x82")),
				clientFrame(true, opContinuation, nil),
			),
			fail: CloseInvalidData,
		},
		{
			name:  "after a failure only the close frame counts",
			in:    cat(clientFrame(true, opBinary, []byte("b")), clientFrame(true, opText, []byte("x")), clientFrame(true, opPing, nil), clientFrame(true, opClose, closePayload(CloseNormal, ""))),
			fail:  CloseUnsupported,
			close: []string{"1005 "}, // the answer to our close
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Whole.
			{
				p := &parser{limit: limit}
				var r recorder
				rest, f := p.feed(bytes.Clone(tc.in), &r)
				checkCase(t, "whole", &r, rest, f, tc.msgs, tc.pings, tc.close, tc.fail)
			}
			// One byte at a time.
			{
				p := &parser{limit: limit}
				var r recorder
				var rest []byte
				var fail *failure
				for i := range tc.in {
					in := append(bytes.Clone(rest), tc.in[i])
					var f *failure
					rest, f = p.feed(in, &r)
					if len(rest) >= maxHeader {
						t.Fatalf("byte by byte: rest of %d bytes", len(rest))
					}
					rest = bytes.Clone(rest)
					if f != nil {
						if fail != nil {
							t.Fatalf("byte by byte: second failure %v after %v", f, fail)
						}
						fail = f
						if tc.failAt != 0 && i+1 != tc.failAt {
							t.Errorf("byte by byte: failed after %d bytes, want %d", i+1, tc.failAt)
						}
					}
				}
				checkCase(t, "byte by byte", &r, rest, fail, tc.msgs, tc.pings, tc.close, tc.fail)
			}
		})
	}
}

func checkCase(t *testing.T, how string, r *recorder, rest []byte, f *failure, msgs, pings, close []string, fail int) {
	t.Helper()
	if len(rest) != 0 {
		t.Errorf("%s: %d bytes left", how, len(rest))
	}
	if fmt.Sprint(r.msgs) != fmt.Sprint(msgs) || len(r.msgs) != len(msgs) {
		t.Errorf("%s: messages %q, want %q", how, r.msgs, msgs)
	}
	for _, m := range r.msgs {
		if !utf8.ValidString(m) {
			t.Errorf("%s: message %q is not UTF-8", how, m)
		}
	}
	if fmt.Sprint(r.pings) != fmt.Sprint(pings) || len(r.pings) != len(pings) {
		t.Errorf("%s: pings %q, want %q", how, r.pings, pings)
	}
	if fmt.Sprint(r.close) != fmt.Sprint(close) || len(r.close) != len(close) {
		t.Errorf("%s: close frames %q, want %q", how, r.close, close)
	}
	got := 0
	if f != nil {
		got = f.code
	}
	if got != fail {
		t.Errorf("%s: failure %v (code %d), want code %d", how, f, got, fail)
	}
}
