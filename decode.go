package wshub

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// decodeFast decodes the common shape of a frame without reflection: one
// flat object whose keys are spelled exactly as in Frame's tags and whose
// strings have no escapes. It reports false, having possibly written part
// of f, when b needs the general decoder (escapes, nulls, nested data or
// items, unknown or differently cased keys, floats in integer fields,
// syntax errors); that decoder then decodes b from scratch.
func decodeFast(b []byte, f *Frame) bool {
	d := fastDecoder{b: b}
	if !d.byte('{') {
		return false
	}
	if d.peek() == '}' {
		d.i++
		return d.end()
	}
	for {
		key, ok := d.str()
		if !ok || !d.byte(':') {
			return false
		}
		if !d.field(f, key) {
			return false
		}
		switch d.next() {
		case ',':
			continue
		case '}':
			return d.end()
		default:
			return false
		}
	}
}

// fastDecoder scans b from i.
type fastDecoder struct {
	b []byte
	i int
}

func (d *fastDecoder) skipSpace() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *fastDecoder) peek() byte {
	d.skipSpace()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *fastDecoder) next() byte {
	c := d.peek()
	if c != 0 {
		d.i++
	}
	return c
}

func (d *fastDecoder) byte(c byte) bool { return d.next() == c }

// end reports whether only white space follows.
func (d *fastDecoder) end() bool {
	d.skipSpace()
	return d.i == len(d.b)
}

// str scans a string of valid UTF-8 without escapes or control
// characters.
func (d *fastDecoder) str() ([]byte, bool) {
	if !d.byte('"') {
		return nil, false
	}
	start := d.i
	ascii := true
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			s := d.b[start : d.i-1]
			return s, ascii || utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		d.i++
	}
	return nil, false
}

// number scans a JSON number.
func (d *fastDecoder) number() ([]byte, bool) {
	d.skipSpace()
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			d.i++
			continue
		}
		break
	}
	n := d.b[start:d.i]
	return n, len(n) > 0 && isNumber(string(n))
}

// uintTo decodes an unsigned integer into *p.
func (d *fastDecoder) uintTo(p *uint64) bool {
	v, ok := d.uint()
	*p = v
	return ok
}

func (d *fastDecoder) uint() (uint64, bool) {
	n, ok := d.number()
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(string(n), 10, 64)
	return v, err == nil
}

func (d *fastDecoder) int(bits int) (int64, bool) {
	n, ok := d.number()
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(n), 10, bits)
	return v, err == nil
}

// text scans a string field.
func (d *fastDecoder) text(dst *string) bool {
	s, ok := d.str()
	if ok {
		*dst = string(s)
	}
	return ok
}

// id scans a string or a number.
func (d *fastDecoder) id(dst *string) bool {
	if d.peek() == '"' {
		return d.text(dst)
	}
	n, ok := d.number()
	if ok {
		*dst = string(n)
	}
	return ok
}

func (d *fastDecoder) bool() (bool, bool) {
	d.skipSpace()
	switch {
	case bytes.HasPrefix(d.b[d.i:], []byte("true")):
		d.i += 4
		return true, true
	case bytes.HasPrefix(d.b[d.i:], []byte("false")):
		d.i += 5
		return false, true
	}
	return false, false
}

// field decodes the value of key into f.
func (d *fastDecoder) field(f *Frame, key []byte) bool {
	switch string(key) {
	case "cmd":
		v, ok := d.int(strconv.IntSize)
		f.Cmd = Cmd(v)
		return ok
	case "id":
		return d.text(&f.ID)
	case "cid":
		return d.text(&f.CID)
	case "userid":
		return d.id(&f.UserID)
	case "dstid":
		return d.id(&f.DstID)
	case "media":
		n, ok := d.number()
		f.Media = json.Number(n)
		return ok
	case "amount":
		n, ok := d.number()
		f.Amount = json.Number(n)
		return ok
	case "content":
		return d.text(&f.Content)
	case "pic":
		return d.text(&f.Pic)
	case "url":
		return d.text(&f.URL)
	case "memo":
		return d.text(&f.Memo)
	case "epoch":
		return d.text(&f.Epoch)
	case "reason":
		return d.text(&f.Reason)
	case "seq":
		return d.uintTo(&f.Seq)
	case "since":
		return d.uintTo(&f.Since)
	case "before":
		return d.uintTo(&f.Before)
	case "read":
		return d.uintTo(&f.Read)
	case "seen":
		return d.uintTo(&f.Seen)
	case "unread":
		return d.uintTo(&f.Unread)
	case "ts":
		v, ok := d.int(64)
		f.TS = v
		return ok
	case "limit":
		v, ok := d.int(strconv.IntSize)
		f.Limit = int(v)
		return ok
	case "code":
		v, ok := d.int(strconv.IntSize)
		f.Code = int(v)
		return ok
	case "room":
		v, ok := d.bool()
		f.Room = v
		return ok
	case "more":
		v, ok := d.bool()
		f.More = v
		return ok
	case "recovered":
		v, ok := d.bool()
		f.Recovered = &v
		return ok
	case "online":
		v, ok := d.bool()
		f.Online = &v
		return ok
	case "ids":
		if !d.byte('[') {
			return false
		}
		f.IDs = f.IDs[:0]
		if d.peek() == ']' {
			d.i++
			return true
		}
		for {
			s, ok := d.str()
			if !ok {
				return false
			}
			f.IDs = append(f.IDs, string(s))
			switch d.next() {
			case ',':
			case ']':
				return true
			default:
				return false
			}
		}
	}
	return false
}
