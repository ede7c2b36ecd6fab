package wsconn

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// refUTF8 is the reference for utf8State, a byte at a time and written
// differently: it decodes the code point as the bytes come and, after each
// byte, works out the range of code points the sequence can still become; a
// byte is bad when that range holds no code point this sequence length may
// encode (an overlong form, a surrogate, one above U+10FFFF). It returns the
// index of the first byte after which b can no longer begin valid UTF-8, or
// -1, and whether b ends on a sequence boundary.
func refUTF8(b []byte) (bad int, complete bool) {
	var cp, need, size int
	minCP := [...]int{2: 0x80, 3: 0x800, 4: 0x10000}
	for i, c := range b {
		if need == 0 {
			switch {
			case c < 0x80:
				continue
			case c&0xe0 == 0xc0:
				cp, need, size = int(c&0x1f), 1, 2
			case c&0xf0 == 0xe0:
				cp, need, size = int(c&0x0f), 2, 3
			case c&0xf8 == 0xf0:
				cp, need, size = int(c&0x07), 3, 4
			default: // a continuation byte, or a lead of 5 or more bytes
				return i, false
			}
		} else {
			if c&0xc0 != 0x80 {
				return i, false
			}
			cp = cp<<6 | int(c&0x3f)
			need--
		}
		lo := cp << (6 * need)
		hi := lo | (1<<(6*need) - 1)
		if hi < minCP[size] || lo > 0x10ffff || (lo >= 0xd800 && hi <= 0xdfff) {
			return i, false
		}
	}
	return -1, need == 0
}

// checkPieces feeds msg to a utf8State in the pieces that cuts (ascending
// offsets into msg) make, and checks that feed fails exactly on the piece
// holding the first bad byte by refUTF8, that the state stays failed after,
// and that the verdict of feed and complete is utf8.Valid(msg).
func checkPieces(t *testing.T, msg []byte, cuts ...int) {
	t.Helper()
	bad, refComplete := refUTF8(msg)
	valid := utf8.Valid(msg)
	if (bad < 0 && refComplete) != valid {
		t.Fatalf("%x: the reference says bad byte %d, complete %v; utf8.Valid says %v", msg, bad, refComplete, valid)
	}
	var s utf8State
	ok, start := true, 0
	for i := 0; i <= len(cuts); i++ {
		end := len(msg)
		if i < len(cuts) {
			end = cuts[i]
		}
		got := s.feed(msg[start:end])
		switch {
		case !ok && got:
			t.Fatalf("%x cut at %v: piece %d accepted after the message failed", msg, cuts, i)
		case ok && got == (start <= bad && bad < end):
			t.Fatalf("%x cut at %v: feed of piece %d [%d:%d] = %v, the first bad byte is at %d",
				msg, cuts, i, start, end, got, bad)
		}
		ok = ok && got
		start = end
	}
	if ok && s.complete() != refComplete {
		t.Fatalf("%x cut at %v: complete = %v, want %v", msg, cuts, s.complete(), refComplete)
	}
	if !ok && s.complete() {
		t.Fatalf("%x cut at %v: complete after a failure", msg, cuts)
	}
	if (ok && s.complete()) != valid {
		t.Fatalf("%x cut at %v: feed and complete say %v, utf8.Valid %v", msg, cuts, ok && s.complete(), valid)
	}
}

// checkEverySplit checks msg whole and cut in two and in three pieces at
// every offset (pieces may be empty).
func checkEverySplit(t *testing.T, msg []byte) {
	t.Helper()
	for i := 0; i <= len(msg); i++ {
		checkPieces(t, msg, i)
		for j := i; j <= len(msg); j++ {
			checkPieces(t, msg, i, j)
		}
	}
}

type utf8Case struct {
	name   string
	pieces []string // the message as it arrives
	valid  bool
	failAt int // the first bad byte, -1 if none (it may still end inside a sequence)
}

func (c utf8Case) msg() []byte { return []byte(strings.Join(c.pieces, "")) }

// perByte cuts s into pieces of one byte.
func perByte(s string) []string {
	p := make([]string, len(s))
	for i := 0; i < len(s); i++ { // bytes, not runes
		p[i] = s[i : i+1]
	}
	return p
}

// autobahnCases are the payloads of Autobahn Testsuite section 6 (UTF-8
// handling, after Markus Kuhn's UTF-8-test.txt), with the byte at which the
// fail-fast cases must fail.
func autobahnCases() []utf8Case {
	var cases []utf8Case
	good := func(name string, pieces ...string) {
		cases = append(cases, utf8Case{name, pieces, true, -1})
	}
	bad := func(name string, failAt int, pieces ...string) {
		cases = append(cases, utf8Case{name, pieces, false, failAt})
	}
	const (
		hello  = "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!" // Hello-µ@ßöäüàá-UTF-8!!
		kosme  = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"                            // κόσμε, 11 bytes
		edited = "\x65\x64\x69\x74\x65\x64"                                                // edited
	)

	good("6.1.1 empty")
	good("6.2.1", hello)
	good("6.2.2", hello[:7], hello[7:]) // cut inside µ
	good("6.2.3", perByte(hello)...)
	good("6.2.4", perByte(kosme)...)

	// κόσμε, a surrogate (ED A0 80), edited: bad at the A0, byte 12.
	surr := kosme + "\xed\xa0\x80" + edited
	bad("6.3.1", 12, surr)
	bad("6.3.2", 12, perByte(surr)...)

	// κόσμε, U+110000 (F4 90 80 80), edited: bad at the 90, byte 12; 6.4.3
	// and 6.4.4 send the same pieces as chops of one frame.
	big := kosme + "\xf4\x90\x80\x80" + edited
	bad("6.4.1", 12, kosme, "\xf4\x90\x80\x80", edited)
	bad("6.4.2", 12, big[:12], big[12:13], big[13:])
	bad("6.4.3", 12, kosme, "\xf4\x90\x80\x80", edited)
	bad("6.4.4", 12, big[:12], big[12:13], big[13:])

	good("6.5.1", "hello\x24world")
	good("6.5.2", "hello\xc2\xa2world")
	good("6.5.3", "hello\xe2\x82\xacworld")
	good("6.5.4", "hello\xf0\xa4\xad\xa2world")
	good("6.5.5", kosme)

	// All prefixes of κόσμε: those that end inside a sequence never fail
	// feed, only complete.
	for i := 1; i <= len(kosme); i++ {
		name := fmt.Sprintf("6.6.%d", i)
		if utf8.ValidString(kosme[:i]) {
			good(name, kosme[:i])
		} else {
			bad(name, -1, kosme[:i])
		}
		if i == len(kosme) {
			good(name+" per byte", perByte(kosme[:i])...)
		}
	}

	good("6.7.1", "\x00")
	good("6.7.2", "\xc2\x80")
	good("6.7.3", "\xe0\xa0\x80")
	good("6.7.4", "\xf0\x90\x80\x80")

	bad("6.8.1", 0, "\xf8\x88\x80\x80\x80")
	bad("6.8.2", 0, "\xfc\x84\x80\x80\x80\x80")

	good("6.9.1", "\x7f")
	good("6.9.2", "\xdf\xbf")
	good("6.9.3", "\xef\xbf\xbf")
	good("6.9.4", "\xf4\x8f\xbf\xbf")

	bad("6.10.1", 0, "\xf7\xbf\xbf\xbf")
	bad("6.10.2", 0, "\xfb\xbf\xbf\xbf\xbf")
	bad("6.10.3", 0, "\xfd\xbf\xbf\xbf\xbf\xbf")

	good("6.11.1", "\xed\x9f\xbf")
	good("6.11.2", "\xee\x80\x80")
	good("6.11.3", "\xef\xbf\xbd")
	good("6.11.4", "\xf4\x8f\xbf\xbf")
	bad("6.11.5", 1, "\xf4\x90\x80\x80")

	// Unexpected continuation bytes.
	bad("6.12.1", 0, "\x80")
	bad("6.12.2", 0, "\xbf")
	bad("6.12.3", 0, "\x80\xbf")
	bad("6.12.4", 0, "\x80\xbf\x80")
	bad("6.12.5", 0, "\x80\xbf\x80\xbf")
	bad("6.12.6", 0, "\x80\xbf\x80\xbf\x80")
	bad("6.12.7", 0, "\x80\xbf\x80\xbf\x80\xbf")
	var conts []byte
	for c := 0x80; c < 0xbf; c++ {
		conts = append(conts, byte(c))
	}
	bad("6.12.8", 0, string(conts))

	// Lonely start characters, each followed by a space: C0 and F8, FC are
	// bad in themselves, E0 and F0 at the space after them.
	lonely := func(from, to int) string {
		var b []byte
		for c := from; c < to; c++ {
			b = append(b, byte(c), ' ')
		}
		return string(b)
	}
	bad("6.13.1", 0, lonely(0xc0, 0xdf))
	bad("6.13.2", 1, lonely(0xe0, 0xef))
	bad("6.13.3", 1, lonely(0xf0, 0xf7))
	bad("6.13.4", 0, lonely(0xf8, 0xfb))
	bad("6.13.5", 0, lonely(0xfc, 0xfd))

	// Sequences with the last continuation byte missing: DF and EF BF are
	// good prefixes, so only complete fails; the others are bad earlier.
	missing := []struct {
		s      string
		failAt int
	}{
		{"\xc0", 0}, {"\xe0\x80", 1}, {"\xf0\x80\x80", 1}, {"\xf8\x80\x80\x80", 0}, {"\xfc\x80\x80\x80\x80", 0},
		{"\xdf", -1}, {"\xef\xbf", -1}, {"\xf7\xbf\xbf", 0}, {"\xfb\xbf\xbf\xbf", 0}, {"\xfd\xbf\xbf\xbf\xbf", 0},
	}
	var concat string
	for i, m := range missing {
		bad(fmt.Sprintf("6.14.%d", i+1), m.failAt, m.s)
		concat += m.s
	}
	bad("6.15.1", 0, concat)

	bad("6.16.1", 0, "\xfe")
	bad("6.16.2", 0, "\xff")
	bad("6.16.3", 0, "\xfe\xfe\xff\xff")

	// Overlong ASCII '/', maximum overlong sequences, overlong NUL: the
	// 3- and 4-byte ones are bad at their second byte.
	bad("6.17.1", 0, "\xc0\xaf")
	bad("6.17.2", 1, "\xe0\x80\xaf")
	bad("6.17.3", 1, "\xf0\x80\x80\xaf")
	bad("6.17.4", 0, "\xf8\x80\x80\x80\xaf")
	bad("6.17.5", 0, "\xfc\x80\x80\x80\x80\xaf")
	bad("6.18.1", 0, "\xc1\xbf")
	bad("6.18.2", 1, "\xe0\x9f\xbf")
	bad("6.18.3", 1, "\xf0\x8f\xbf\xbf")
	bad("6.18.4", 0, "\xf8\x87\xbf\xbf\xbf")
	bad("6.18.5", 0, "\xfc\x83\xbf\xbf\xbf\xbf")
	bad("6.19.1", 0, "\xc0\x80")
	bad("6.19.2", 1, "\xe0\x80\x80")
	bad("6.19.3", 1, "\xf0\x80\x80\x80")
	bad("6.19.4", 0, "\xf8\x80\x80\x80\x80")
	bad("6.19.5", 0, "\xfc\x80\x80\x80\x80\x80")

	// Single and paired UTF-16 surrogates: bad at the byte after ED.
	for i, s := range []string{"\xed\xa0\x80", "\xed\xad\xbf", "\xed\xae\x80", "\xed\xaf\xbf", "\xed\xb0\x80", "\xed\xbe\x80", "\xed\xbf\xbf"} {
		bad(fmt.Sprintf("6.20.%d", i+1), 1, s)
	}
	for i, s := range []string{
		"\xed\xa0\x80\xed\xb0\x80", "\xed\xa0\x80\xed\xbf\xbf", "\xed\xad\xbf\xed\xb0\x80", "\xed\xad\xbf\xed\xbf\xbf",
		"\xed\xae\x80\xed\xb0\x80", "\xed\xae\x80\xed\xbf\xbf", "\xed\xaf\xbf\xed\xb0\x80", "\xed\xaf\xbf\xed\xbf\xbf",
	} {
		bad(fmt.Sprintf("6.21.%d", i+1), 1, s)
	}

	// Non-characters are valid UTF-8.
	nonchars := []string{"\xef\xbf\xbe", "\xef\xbf\xbf"}
	for _, z1 := range []byte{0xf0, 0xf1, 0xf2, 0xf3, 0xf4} {
		for _, z2 := range []byte{0x8f, 0x9f, 0xaf, 0xbf} {
			if z1 == 0xf4 && z2 != 0x8f || z1 == 0xf0 && z2 == 0x8f {
				continue // above U+10FFFF; overlong
			}
			for _, z3 := range []byte{0xbe, 0xbf} {
				nonchars = append(nonchars, string([]byte{z1, z2, 0xbf, z3}))
			}
		}
	}
	for i, s := range nonchars {
		good(fmt.Sprintf("6.22.%d", i+1), s)
	}

	// Specials, the replacement character among them.
	for i, c := range []byte{0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf} {
		good(fmt.Sprintf("6.23.%d", i+1), string([]byte{0xef, 0xbf, c}))
	}
	return cases
}

func TestUTF8Autobahn(t *testing.T) {
	for _, c := range autobahnCases() {
		msg := c.msg()
		if utf8.Valid(msg) != c.valid {
			t.Fatalf("%s: table says valid %v, utf8.Valid %v", c.name, c.valid, !c.valid)
		}
		if bad, _ := refUTF8(msg); bad != c.failAt {
			t.Fatalf("%s: table says the first bad byte is %d, the reference %d", c.name, c.failAt, bad)
		}
		// The pieces as Autobahn sends them.
		var s utf8State
		failed, start := -1, 0
		for _, p := range c.pieces {
			if !s.feed([]byte(p)) {
				failed = start
				break
			}
			start += len(p)
		}
		// The offset of the piece holding the bad byte.
		wantFailed := -1
		if c.failAt >= 0 {
			wantFailed = 0
			for _, p := range c.pieces {
				if wantFailed+len(p) > c.failAt {
					break
				}
				wantFailed += len(p)
			}
		}
		if failed != wantFailed {
			t.Errorf("%s: feed failed on the piece at byte %d, want the piece at %d (bad byte %d)", c.name, failed, wantFailed, c.failAt)
		}
		if got := failed < 0 && s.complete(); got != c.valid {
			t.Errorf("%s: valid %v, want %v", c.name, got, c.valid)
		}
		checkPieces(t, msg, perByteCuts(len(msg))...)
		checkPieces(t, msg)
	}
}

// perByteCuts cuts a message of n bytes into pieces of one byte.
func perByteCuts(n int) []int {
	cuts := make([]int, 0, n)
	for i := 1; i < n; i++ {
		cuts = append(cuts, i)
	}
	return cuts
}

// The validator's state is cleared by reset, and a failure sticks until then.
func TestUTF8Reset(t *testing.T) {
	var s utf8State
	if !s.feed([]byte("ab\xe2\x82")) || s.complete() {
		t.Fatal("a cut sequence: want feed true, complete false")
	}
	s.reset()
	if !s.feed([]byte("\xe2\x82\xac")) || !s.complete() {
		t.Fatal("after reset: want a new message")
	}
	if s.feed([]byte("\xff")) || s.feed(nil) || s.feed([]byte("a")) || s.complete() {
		t.Fatal("after a bad byte: want feed false and complete false until reset")
	}
	s.reset()
	if !s.feed([]byte("a")) || !s.complete() {
		t.Fatal("after reset: want a new message")
	}
	if s != (utf8State{}) {
		t.Fatalf("at a boundary, the state is %+v, not the zero value", s)
	}
}

// utf8Samples are strings to cut at every point: the Autobahn payloads
// and some more valid and invalid text.
func utf8Samples() [][]byte {
	var out [][]byte
	for _, c := range autobahnCases() {
		out = append(out, c.msg())
	}
	for _, s := range []string{
		"plain ascii text that is long enough for a word or two",
		"κόσμε Привет 世界 🎉 ok",
		"🎉🎉🎉🎉🎉🎉🎉🎉",
		"a\U0010ffffb\U00010000c\u0800d\u07ffe\u0080f\ud7ff\ue000",
		"0123456789abcdef\xed\xa0\x80 after a word of ASCII",
		"0123456789abcdef01234567\xf4\x90",
		"0123456789abcdef0123456\xe0\x9f",
		"0123456789abcdef012345\xf0\x8f\xbf",
		"0123456789abcdef0123456789\xc2",
		"0123456789abcdef0123456789\xe2\x82",
		"0123456789abcdef0123456789\xf0\x9f\x8e",
		"0123456789abcdef0123456789\x80",
		"0123456789abcdef0123456789\xbf\xbf\xbf",
		"0123456789abcdef012345678\xf0\x9f\x8e\x89",
		"0123456789abcdef012345678\xf0\x9f\x8e\x89\x89",
		"0123456789abcdef012345678\xe2\x82\xac\x80",
		"01234567\xc2\xa2\xe2\x82\xac\xf0\x9f\x8e\x89\xc2",
		"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\x20",
	} {
		out = append(out, []byte(s))
	}
	return out
}

func TestUTF8EverySplit(t *testing.T) {
	for _, msg := range utf8Samples() {
		checkEverySplit(t, msg)
	}
}

// utf8Alphabet makes random byte strings likely to hit the edges: ASCII,
// continuation bytes at the ends of the ranges that E0, ED, F0 and F4 allow,
// leads valid and not.
var utf8Alphabet = []byte{
	'a', 'b', 0x00, 0x7f,
	0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
	0xc0, 0xc1, 0xc2, 0xdf,
	0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef,
	0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xf7, 0xf8, 0xfe, 0xff,
}

// randUTF8ish returns n random bytes or valid runes of the alphabet.
func randUTF8ish(r *rand.Rand, n int) []byte {
	var b []byte
	for len(b) < n {
		switch r.IntN(4) {
		case 0: // a valid rune of any length
			var c rune
			switch r.IntN(4) {
			case 0:
				c = rune(r.IntN(0x80))
			case 1:
				c = rune(0x80 + r.IntN(0x800-0x80))
			case 2:
				c = rune(0x800 + r.IntN(0x10000-0x800))
				if 0xd800 <= c && c <= 0xdfff {
					c = 0xfffd
				}
			default:
				c = rune(0x10000 + r.IntN(0x110000-0x10000))
			}
			b = utf8.AppendRune(b, c)
		case 1:
			b = append(b, byte(r.Uint32()))
		default:
			b = append(b, utf8Alphabet[r.IntN(len(utf8Alphabet))])
		}
	}
	return b
}

// Random byte strings, cut into one to three pieces at every offset.
func TestUTF8Random(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for range n {
		checkEverySplit(t, randUTF8ish(r, r.IntN(20)))
	}
}

// Long valid text with one byte changed, in random pieces: the bulk goes
// through utf8.Valid, the bad byte deep inside a piece.
func TestUTF8RandomLong(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	text := []byte(strings.Repeat("κόσμε Привет 世界 🎉 plain ASCII words ", 20))
	for range 3000 {
		msg := bytes.Clone(text[:r.IntN(len(text))])
		if len(msg) > 0 && r.IntN(4) != 0 {
			msg[r.IntN(len(msg))] = utf8Alphabet[r.IntN(len(utf8Alphabet))]
		}
		var cuts []int
		for c := 0; ; {
			c += r.IntN(200)
			if c > len(msg) {
				break
			}
			cuts = append(cuts, c)
		}
		checkPieces(t, msg, cuts...)
		checkPieces(t, msg)
	}
}

func TestUTF8NoAlloc(t *testing.T) {
	var s utf8State
	msg := []byte(strings.Repeat("κόσμε 🎉 ascii ", 50))
	if n := testing.AllocsPerRun(100, func() {
		s.reset()
		s.feed(msg[:101])
		s.feed(msg[101:])
		s.complete()
	}); n != 0 {
		t.Errorf("utf8State allocates %v times per message", n)
	}
}

func FuzzUTF8State(f *testing.F) {
	for _, msg := range utf8Samples() {
		f.Add(msg, uint(len(msg)/3), uint(len(msg)/2))
	}
	f.Fuzz(func(t *testing.T, msg []byte, i, j uint) {
		i %= uint(len(msg)) + 1
		j %= uint(len(msg)) + 1
		if i > j {
			i, j = j, i
		}
		checkPieces(t, msg, int(i), int(j))
		checkPieces(t, msg, int(i))
		checkPieces(t, msg)
	})
}

// benchText is mixed text of 1- to 4-byte sequences, n bytes long or a
// sequence less.
func benchText(n int) []byte {
	const words = "κόσμε Привет 世界 🎉 ascii "
	var b []byte
	for len(b) < n {
		for _, c := range words {
			if len(b)+utf8.RuneLen(c) > n {
				return b
			}
			b = utf8.AppendRune(b, c)
		}
	}
	return b
}

// utf8Bench are the inputs of BenchmarkUTF8State and BenchmarkUTF8Valid;
// chopped-64k is fed in pieces of 1000 bytes, which cut sequences.
var utf8Bench = []struct {
	name  string
	msg   []byte
	piece int
}{
	{"ascii-1k", []byte(strings.Repeat("plain ascii text, ", 57)[:1024]), 1024},
	{"multibyte-1k", benchText(1024), 1024},
	{"chopped-64k", benchText(64 << 10), 1000},
}

func BenchmarkUTF8State(b *testing.B) {
	for _, bc := range utf8Bench {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.msg)))
			var s utf8State
			for b.Loop() {
				s.reset()
				for p := bc.msg; len(p) > 0; {
					n := min(bc.piece, len(p))
					if !s.feed(p[:n]) {
						b.Fatal("invalid")
					}
					p = p[n:]
				}
				if !s.complete() {
					b.Fatal("incomplete")
				}
			}
		})
	}
}

// BenchmarkUTF8Valid is utf8.Valid on the inputs of BenchmarkUTF8State,
// whole.
func BenchmarkUTF8Valid(b *testing.B) {
	for _, bc := range utf8Bench {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.msg)))
			for b.Loop() {
				if !utf8.Valid(bc.msg) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
