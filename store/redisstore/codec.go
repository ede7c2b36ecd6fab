package redisstore

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/wshub/wshub/store"
)

// codecVersion is the first byte of every encoded message. A value with
// another first byte is reported as ErrCorrupt, so a future layout can be
// told apart.
const codecVersion = 1

// encode returns the stored form of m without its seq (Append's script
// prepends "<seq>:"):
//
//	version byte (1)
//	uvarint length + bytes of ID, Conv, From, To
//	varint TS, varint Cmd
//	Body: the rest of the value, unchanged
func encode(m *store.Message) []byte {
	n := 1 + 6*binary.MaxVarintLen64 + len(m.ID) + len(m.Conv) + len(m.From) + len(m.To) + len(m.Body)
	b := make([]byte, 0, n)
	b = append(b, codecVersion)
	b = appendString(b, m.ID)
	b = appendString(b, m.Conv)
	b = appendString(b, m.From)
	b = appendString(b, m.To)
	b = binary.AppendVarint(b, m.TS)
	b = binary.AppendVarint(b, int64(m.Cmd))
	return append(b, m.Body...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decode parses a stored value "<seq>:<encoded message>". The strings of
// the result share memory with v; Body is a copy (nil when empty).
func decode(v string) (store.Message, error) {
	var m store.Message
	colon := strings.IndexByte(v, ':')
	if colon <= 0 {
		return m, fmt.Errorf("%w: no seq in a stored message", ErrCorrupt)
	}
	seq, err := strconv.ParseUint(v[:colon], 10, 64)
	if err != nil || seq == 0 {
		return m, fmt.Errorf("%w: bad seq %q in a stored message", ErrCorrupt, v[:colon])
	}
	m.Seq = seq
	d := decoder{s: v[colon+1:]}
	if d.byte() != codecVersion {
		return store.Message{}, fmt.Errorf("%w: unknown message encoding", ErrCorrupt)
	}
	m.ID = d.string()
	m.Conv = d.string()
	m.From = d.string()
	m.To = d.string()
	m.TS = d.varint()
	cmd := d.varint()
	m.Cmd = int(cmd)
	if d.bad || int64(m.Cmd) != cmd {
		return store.Message{}, fmt.Errorf("%w: truncated or malformed message", ErrCorrupt)
	}
	if d.s != "" {
		m.Body = []byte(d.s)
	}
	return m, nil
}

// decoder reads the fields of an encoded message from the front of s. A
// read past the end sets bad and returns a zero value.
type decoder struct {
	s   string
	bad bool
}

func (d *decoder) byte() byte {
	if d.s == "" {
		d.bad = true
		return 0
	}
	c := d.s[0]
	d.s = d.s[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	var x uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		if i >= len(d.s) {
			break
		}
		c := d.s[i]
		if i == binary.MaxVarintLen64-1 && c > 1 {
			break // overflows 64 bits
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			d.s = d.s[i+1:]
			return x
		}
	}
	d.bad = true
	return 0
}

func (d *decoder) varint() int64 {
	ux := d.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.s)) {
		d.bad = true
		return ""
	}
	s := d.s[:n]
	d.s = d.s[n:]
	return s
}
