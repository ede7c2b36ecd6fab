package wsconn

import "unicode/utf8"

// utf8State validates UTF-8 incrementally: Feed the bytes of one text
// message in as many pieces as they arrive; feed fails on the piece holding
// the first byte after which the message can no longer be valid UTF-8, so
// that the connection can be failed (1007) without waiting for the rest of
// the message. At the end of the message, complete reports whether it ended
// on a sequence boundary. The zero value is ready for a message.
//
// Between two calls the state is only where the last sequence stands: how
// many continuation bytes it still needs and the range the next one must be
// in (a range narrower than 80..BF after E0, ED, F0 and F4 is what rejects
// overlong forms, surrogates and code points above U+10FFFF at their second
// byte). After a failure the state stays failed until reset.
type utf8State struct {
	need   uint8 // continuation bytes the current sequence still needs, or utf8Failed
	lo, hi uint8 // the range of the next byte while need > 0
}

// utf8Failed is utf8State.need once a byte has made the message invalid.
const utf8Failed = 0xff

// feed reports false as soon as p makes the message invalid UTF-8 (a byte
// that can start or continue no valid sequence: overlong forms, surrogates
// U+D800–DFFF, code points above U+10FFFF, bytes C0, C1, F5–FF, a bad
// continuation). A sequence may be cut between two calls.
func (s *utf8State) feed(p []byte) bool {
	if s.need != 0 {
		if s.need == utf8Failed {
			return false
		}
		// Finish the sequence cut by the last piece.
		for s.need != 0 {
			if len(p) == 0 {
				return true
			}
			if !s.step(p[0]) {
				return false
			}
			p = p[1:]
		}
	}
	// At a sequence boundary: utf8.Valid checks everything up to the start
	// of the last sequence if that sequence starts in the last 3 bytes (it
	// may be cut); step checks that sequence, which then is at most 3
	// bytes. If the last 3 bytes are continuation bytes, a valid p ends with
	// a whole 4-byte sequence, and if one of them is ASCII, a valid p ends
	// with it: utf8.Valid checks all of p.
	k := len(p)
	for i := len(p) - 1; i >= 0 && i >= len(p)-3; i-- {
		if c := p[i]; c < 0x80 {
			break
		} else if c >= 0xc0 {
			k = i
			break
		}
	}
	if !utf8.Valid(p[:k]) {
		s.need = utf8Failed
		return false
	}
	for _, c := range p[k:] {
		if !s.step(c) {
			return false
		}
	}
	return true
}

// step advances the state by the byte c and reports whether the message
// can still be valid.
func (s *utf8State) step(c byte) bool {
	if s.need == 0 {
		s.lo, s.hi = 0x80, 0xbf
		switch {
		case c < 0x80:
			return true
		case c < 0xc2: // continuation byte, or C0/C1 (overlong)
		case c < 0xe0:
			s.need = 1
			return true
		case c < 0xf0:
			switch c {
			case 0xe0:
				s.lo = 0xa0 // below: overlong
			case 0xed:
				s.hi = 0x9f // above: surrogates
			}
			s.need = 2
			return true
		case c < 0xf5:
			switch c {
			case 0xf0:
				s.lo = 0x90 // below: overlong
			case 0xf4:
				s.hi = 0x8f // above: beyond U+10FFFF
			}
			s.need = 3
			return true
		}
	} else if s.lo <= c && c <= s.hi {
		s.need--
		s.lo, s.hi = 0x80, 0xbf
		return true
	}
	s.need = utf8Failed
	return false
}

// complete reports whether the bytes fed so far end on a sequence boundary
// (a message must not end inside a sequence).
func (s *utf8State) complete() bool {
	return s.need == 0
}

// reset returns to the start state for the next message.
func (s *utf8State) reset() {
	*s = utf8State{}
}
