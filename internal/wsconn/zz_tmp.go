package wsconn

import "unicode/utf8"

// TEMPORARY stand-ins until the utf8mask branch lands.
type utf8State struct{ buf []byte }

func (s *utf8State) feed(p []byte) bool {
	s.buf = append(s.buf, p...)
	b := s.buf
	// valid prefix check: strip up to 3 trailing bytes that may be an incomplete sequence
	for k := 0; k <= 3 && k <= len(b); k++ {
		if utf8.Valid(b[:len(b)-k]) && (k == 0 || !utf8.FullRune(b[len(b)-k:])) {
			return true
		}
	}
	return false
}
func (s *utf8State) complete() bool { return utf8.Valid(s.buf) }
func (s *utf8State) reset()         { s.buf = s.buf[:0] }

func mask(key [4]byte, pos int, p []byte) int {
	for i := range p {
		p[i] ^= key[(pos+i)&3]
	}
	return (pos + len(p)) & 3
}
