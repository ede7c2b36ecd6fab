package memstore

import (
	"encoding/binary"
	"unsafe"

	"github.com/wshub/wshub/store"
)

// record is a stored message (and the cid it was sent with) encoded in one
// allocation that holds no pointers: the garbage collector marks it without
// scanning it. A store that keeps millions of messages in the heap would
// otherwise give every collection about a dozen pointers per message to
// follow (the Message, its strings, the cid record's), and the hub's
// latency would carry the longer marking (docs/benchmarks.md, "A heap the
// collector does not scan").
//
// A record is never modified once encoded, so the strings and Body that
// message and the accessors return may point into it: they keep it alive
// and nobody writes to it. Layout: the uvarints of Seq, TS (zigzag) and Cmd
// (zigzag), then ID, Conv, From, To, cid and Body, each as a uvarint length
// and its bytes.
type record []byte

// newRecord encodes m, with seq and cid, in a record of its exact size.
func newRecord(m *store.Message, seq uint64, cid string) record {
	fields := [...]string{m.ID, m.Conv, m.From, m.To, cid}
	n := uvarintLen(seq) + uvarintLen(zigzag(m.TS)) + uvarintLen(zigzag(int64(m.Cmd))) +
		uvarintLen(uint64(len(m.Body))) + len(m.Body)
	for _, f := range fields {
		n += uvarintLen(uint64(len(f))) + len(f)
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, seq)
	b = binary.AppendUvarint(b, zigzag(m.TS))
	b = binary.AppendUvarint(b, zigzag(int64(m.Cmd)))
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Body)))
	b = append(b, m.Body...)
	return b
}

// message returns the stored message. Its strings and Body share r's
// bytes.
func (r record) message() store.Message {
	m, _ := r.decode()
	return m
}

// decode returns the stored message and its cid, sharing r's bytes.
func (r record) decode() (m store.Message, cid string) {
	var ts, cmd uint64
	b := []byte(r)
	m.Seq, b = uvarint(b)
	ts, b = uvarint(b)
	cmd, b = uvarint(b)
	m.TS, m.Cmd = unzigzag(ts), int(unzigzag(cmd))
	m.ID, b = field(b)
	m.Conv, b = field(b)
	m.From, b = field(b)
	m.To, b = field(b)
	cid, b = field(b)
	if body, _ := field(b); len(body) > 0 {
		m.Body = unsafe.Slice(unsafe.StringData(body), len(body))
	}
	return m, cid
}

// from returns the message's sender, sharing r's bytes.
func (r record) from() string { return r.nth(2) }

// nth returns the string field i (0: ID, 1: Conv, 2: From, 3: To, 4: cid).
func (r record) nth(i int) string {
	b := []byte(r)
	for range 3 {
		_, b = uvarint(b)
	}
	var s string
	for range i + 1 {
		s, b = field(b)
	}
	return s
}

// uvarint decodes a uvarint of a record, which is well formed.
func uvarint(b []byte) (uint64, []byte) {
	v, n := binary.Uvarint(b)
	return v, b[n:]
}

// field decodes a length and the bytes after it as a string sharing b.
func field(b []byte) (string, []byte) {
	n, b := uvarint(b)
	if n == 0 {
		return "", b
	}
	return unsafe.String(&b[0], int(n)), b[n:]
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(v uint64) int64 { return int64(v>>1) ^ -int64(v&1) }
